"""No-model references for the amazon_fashion mask table: the training majority category, the
training mean number and the training mean vector, scored on one masked cell per test row as
MCM is scored (in-batch retrieval over batches of BATCH rows, the run's --batch-size).
Run: python docs/scripts/amazon_reference.py [BATCH]"""
import sys

import torch
import torch.nn.functional as F
import torch_frame

from relssl.data.datasets import load_dataset
from relssl.data.encoding import category_counts
from relssl.data.prepare import prepare
from relssl.data.text import TextEmbedder
from relssl.masking import Masker
from relssl.objectives.mcm import embedding_scores

prep = prepare(load_dataset("amazon_fashion"), text=TextEmbedder(progress=False))
enc, train = prep.events, prep.rows(0)
masker = Masker(enc, train, "replace")
sums = dict(correct=0, cat=0, sse=0.0, num=0, cos=0.0, hit=0, emb=0, mv_trivial=0.0, mv_cells=0)
batch = int(sys.argv[1]) if len(sys.argv) > 1 else 512
for seed in (0, 1):
    for rows in prep.rows(2).split(batch):
        tf = enc.tf[rows]
        observed = masker.observed(tf)
        target = masker.choose(observed, torch.Generator().manual_seed(seed))
        sums["mv_trivial"] += float((observed & ~target).sum())  # "nothing was masked" is right here
        sums["mv_cells"] += float(observed.sum())
        for pos, col in enumerate(enc.columns):
            r = target[:, pos].nonzero().squeeze(1)
            if r.numel() == 0:
                continue
            if col.stype == torch_frame.categorical:
                majority = int(category_counts(enc, col).argmax())
                sums["correct"] += int((tf.feat_dict[col.stype][r, col.index] == majority).sum())
                sums["cat"] += r.numel()
            elif col.stype == torch_frame.numerical:
                # the training mean is z = 0: the error is the standardised value itself
                sums["sse"] += float(((tf.feat_dict[col.stype][r, col.index] - col.mean) / col.std).pow(2).sum())
                sums["num"] += r.numel()
            elif col.stype == torch_frame.embedding:
                met, all_met = tf.feat_dict[col.stype], enc.tf.feat_dict[col.stype]
                lo, hi = int(met.offset[col.index]), int(met.offset[col.index + 1])
                tr = all_met.values[train, lo:hi]
                mean = F.normalize(tr[tr.ne(0).any(1)].mean(0), dim=0)
                cos, hit = embedding_scores(mean.expand(r.numel(), -1), met.values[r, lo:hi])
                sums["cos"] += float(cos.sum())
                sums["hit"] += int(hit.sum())
                sums["emb"] += r.numel()
print(f"majority ACC {sums['correct'] / sums['cat']:.3f}  mean RMSE {(sums['sse'] / sums['num']) ** 0.5:.3f}  "
      f"mean-vector emb cos {sums['cos'] / sums['emb']:.3f}  emb R@1 {sums['hit'] / sums['emb']:.3f}  "
      f"MV ACC of 'nothing masked' {sums['mv_trivial'] / sums['mv_cells']:.3f}")
