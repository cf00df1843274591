"""Train/validation/test splits that never let later data inform earlier decisions."""
from __future__ import annotations

import numpy as np

from relssl.errors import RelsslError

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
# What a row's sampled neighbourhood may hold within its split's graph: "causal", only events at or
# before the row's time (the default everywhere); "transductive", every event of the graph, later
# ones included, as the published Multi-GNN results on AMLworld are evaluated.
PROTOCOLS = ("causal", "transductive")


def parse_fractions(text: str | tuple[float, ...]) -> tuple[float, float, float]:
    """'60/20/20' or (0.6, 0.2, 0.2) -> fractions summing to one."""
    parts = text.split("/") if isinstance(text, str) else list(text)
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise RelsslError(f"--split '{text}': expected three numbers like 60/20/20") from None
    if len(vals) != 3 or min(vals) < 0 or sum(vals) <= 0 or vals[0] == 0:
        raise RelsslError(f"--split '{text}': expected three non-negative numbers like 60/20/20")
    total = sum(vals)
    return tuple(v / total for v in vals)  # type: ignore[return-value]


def temporal_split(time: np.ndarray | None, n: int, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> np.ndarray:
    """Split rows by time: every validation row is later than every training row, and so on.

    Boundaries are timestamps, so rows sharing a timestamp land in the same split (the training
    share can exceed its fraction slightly). Without a time column the split is a seeded
    random permutation.
    """
    if time is None:
        split = np.full(n, TEST, dtype=np.int8)
        order = np.random.default_rng(seed).permutation(n)
        n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
        split[order[:n_train]] = TRAIN
        split[order[n_train:n_train + n_val]] = VAL
        return split
    unique_times, counts = np.unique(time, return_counts=True)
    return split_by_time(time, time_cuts(unique_times, counts, fractions))


def time_cuts(unique_times: np.ndarray, counts: np.ndarray, fractions) -> tuple[int, int]:
    """The last training and last validation timestamp, from each distinct time's row count.

    Counts per distinct timestamp are all a streaming reader needs to keep (AML timestamps are
    minutes, so a few thousand values for millions of rows), and they give the exact quantiles
    a full sort would.
    """
    n = int(counts.sum())
    cum = np.cumsum(counts)

    def sorted_time(k: int) -> int:  # the k-th smallest time
        return int(unique_times[np.searchsorted(cum, k, side="right")])

    cut_train = sorted_time(max(int(round(fractions[0] * n)) - 1, 0))
    cut_val = sorted_time(max(int(round((fractions[0] + fractions[1]) * n)) - 1, 0))
    return cut_train, cut_val


def split_by_time(time: np.ndarray, cuts: tuple[int, int]) -> np.ndarray:
    """Train up to the first cut, validation up to the second, test after."""
    split = np.full(len(time), TEST, dtype=np.int8)
    split[time <= cuts[1]] = VAL
    split[time <= cuts[0]] = TRAIN
    return split
