"""Ranking metrics of each positive against its own negatives (link prediction), as pure functions.

Metrics over an epoch are kept as sums (``rank_sums`` per batch, added up, then ``rank_metrics``)
so that batches of different sizes weigh by their number of positives.
"""
from __future__ import annotations

import torch
from torch import Tensor

HITS_AT = (1, 2, 5, 10)


def pessimistic_rank(pos: Tensor, neg: Tensor, valid: Tensor | None = None) -> Tensor:
    """[B] rank of each positive ``pos`` [B] among itself and its valid negatives ``neg`` [B, K]:
    1 + the number of valid negatives scoring at least as high. Ties count against the model, so a
    constant scorer ranks last, not first."""
    beaten = neg >= pos.unsqueeze(1)
    if valid is not None:
        beaten = beaten & valid
    return 1 + beaten.sum(1)


def rank_sums(ranks: Tensor, num_candidates: Tensor | None = None, ks=HITS_AT) -> dict:
    """Accumulators (relssl.metrics.sums; all but the count tensors on the ranks' device): the
    number of positives, the sum of reciprocal ranks, hits within each k; with ``num_candidates``
    (each positive's 1 + number of negatives) also those of random scores."""
    sums = {"count": float(len(ranks)), "rr": (1.0 / ranks.double()).sum()}
    sums.update({f"hits@{k}": (ranks <= k).sum() for k in ks})
    if num_candidates is not None:
        sums.update(random_rank_sums(num_candidates, ks))
    return sums


def random_rank_sums(num_candidates: Tensor, ks=HITS_AT) -> dict:
    """Expected ``rank_sums`` of random scores (no ties): among n candidates the rank is uniform on
    1..n, so E[1/rank] = H(n)/n and P(rank <= k) = min(k, n)/n. Reported as the ``_ref`` metrics."""
    n = num_candidates.double().clamp(min=1)
    harmonic = torch.special.digamma(n + 1) + 0.5772156649015329  # H(n) = ψ(n + 1) + γ
    sums = {"rr_ref": (harmonic / n).sum()}
    sums.update({f"hits@{k}_ref": (n.clamp(max=k) / n).sum() for k in ks})
    return sums


def rank_metrics(sums: dict[str, float], ks=HITS_AT) -> dict[str, float]:
    """MRR and Hits@k from (summed) ``rank_sums``, with their random-score references when summed."""
    n = max(sums.get("count", 0.0), 1.0)
    out = {"mrr": sums.get("rr", float("nan")) / n, **{f"hits@{k}": sums.get(f"hits@{k}", float("nan")) / n
                                                       for k in ks}}
    if "rr_ref" in sums:
        out["mrr_ref"] = sums["rr_ref"] / n
        out.update({f"hits@{k}_ref": sums[f"hits@{k}_ref"] / n for k in ks})
    return out


def percentile_ranks(scores: Tensor, truth: Tensor) -> Tensor:
    """[B] percentile rank in [0, 1] of each row's true candidate ``truth`` [B] among the V ≥ 2
    candidates scored in ``scores`` [B, V]: the fraction of the *other* candidates scoring at least
    as high, #{u ≠ t : s_u ≥ s_t} / (V − 1). 0 = ranked first, 1 = ranked last; ties count against
    the model (pessimistic), so a constant scorer gets 1 and a random one 0.5 on average.
    The mean over rows is the mean percentile rank (MPR, lower is better)."""
    if scores.shape[1] < 2:
        raise ValueError("a percentile rank needs at least two candidates")
    true_score = scores.gather(1, truth.unsqueeze(1))
    at_least = (scores >= true_score).sum(1) - 1  # the true candidate ties with itself
    return at_least.double() / (scores.shape[1] - 1)
