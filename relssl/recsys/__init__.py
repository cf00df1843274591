"""Multimodal recommendation: LATTICE/MMSSL data, MMSSL with BPR-MF and LightGCN baselines,
full-ranking evaluation (Recall / Precision / NDCG @K)."""
