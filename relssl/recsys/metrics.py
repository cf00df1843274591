"""Full-ranking evaluation: every item is scored, known items are excluded, and Recall / Precision
/ NDCG @K are computed for a batch of users at once (dense users-in-batch × items, never more)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from relssl.recsys.graph import Csr

KS = (10, 20)
METRICS = tuple(f"{name}@{k}" for name in ("recall", "precision", "ndcg") for k in KS)


def ranking_sums(scores: torch.Tensor, relevant: torch.Tensor, ks=KS) -> dict[str, float]:
    """Sums over the users (rows) of Recall@k = hits/|relevant|, Precision@k = hits/k and
    NDCG@k = DCG/ideal DCG with binary gains; rows without relevant items are skipped. Excluded
    items must already score -inf."""
    n_rel = relevant.sum(1)
    keep = n_rel > 0
    scores, relevant, n_rel = scores[keep], relevant[keep], n_rel[keep].float()
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = torch.nn.functional.pad(relevant.gather(1, top).float(), (0, max(ks) - top.shape[1]))
    discount = 1.0 / torch.log2(torch.arange(2, max(ks) + 2, dtype=torch.float, device=scores.device))
    sums = {"users": float(keep.sum())}
    for k in ks:
        h = hits[:, :k].sum(1)
        ideal = discount[:k].cumsum(0)[n_rel.clamp(max=k).long() - 1]
        sums[f"recall@{k}"] = float((h / n_rel).sum())
        sums[f"precision@{k}"] = float(h.sum() / k)
        sums[f"ndcg@{k}"] = float(((hits[:, :k] * discount[:k]).sum(1) / ideal).sum())
    return sums


def evaluate_ranking(score: Callable[[torch.Tensor], torch.Tensor], truth: Csr, exclude: Csr,
                     batch_size: int = 2048, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean metrics over the users with items in ``truth``; ``score(users)`` gives users × items
    scores; items in ``exclude`` (training, plus validation for the test split) never count."""
    users = torch.nonzero(truth.degree > 0).flatten()
    totals: dict[str, float] = {}
    for batch in users.split(batch_size):
        scores = score(batch.to(device)).clone()
        rows, cols = exclude.gather(batch)
        scores[rows.to(device), cols.to(device)] = -torch.inf
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        rows, cols = truth.gather(batch)
        relevant[rows.to(device), cols.to(device)] = True
        for key, value in ranking_sums(scores, relevant).items():
            totals[key] = totals.get(key, 0.0) + value
    n = totals.pop("users", 0.0)
    return {m: totals.get(m, 0.0) / max(n, 1.0) for m in METRICS}
