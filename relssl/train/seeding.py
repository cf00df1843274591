"""One seed fixes everything: each (purpose, epoch, step) gets its own reproducible generator."""
from __future__ import annotations

import os

import numpy as np
import torch

# Streams keep the draws of different purposes independent of one another: one table for the package.
# Pre-training, Feat2Vec and recommendation training:
SHUFFLE, TRAIN_STEP, EVAL_ROWS, EVAL_STEP, DROPOUT, COMBINER, OWN_VIEW, TABLE = range(8)
# relssl bench's batches, samples and steps:
BENCH_ROWS, BENCH_SAMPLE, BENCH_BUILD, BENCH_STEP = range(9, 13)
# Downstream (relssl.eval): fine-tuning's shuffles and steps, fixed evaluation and export draws, dropout:
DOWNSTREAM_SHUFFLE, DOWNSTREAM_STEP, DOWNSTREAM_EVAL, DOWNSTREAM_EMBED, DOWNSTREAM_DROPOUT = range(101, 106)


def generator(seed: int, stream: int, *keys: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream, *keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def eval_sample(n: int, limit: int | None, seed: int, split: int) -> torch.Tensor:
    """Positions (sorted) of a split's fixed evaluation sample among its ``n`` rows: at most
    ``limit`` drawn by the seed, the same for every command run with that seed."""
    if limit is None or n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=generator(seed, EVAL_ROWS, split))[:limit].sort().values


def eval_rows(prep, split: int, limit: int | None, seed: int) -> torch.Tensor:
    """The fixed, seeded evaluation rows of a split of prepared data (relssl.data.prepare)."""
    rows = prep.rows(split)
    return rows[eval_sample(len(rows), limit, seed, split)]


def deterministic_kernels() -> None:
    """Ask torch for reproducible kernels: parallel scatter-adds otherwise sum in thread order, so two
    runs with one seed drift apart in the last bits. The kernels were measured free on CPU (see
    docs/benchmarks.md); the mode's other effect, filling every new tensor with NaN before a kernel
    writes it (so that a kernel reading memory it never wrote gives NaN, not noise), is a debugging
    aid that cost 7 % of an FT-Transformer step (22 fills of 3 MB a step), so it is turned off here,
    for the process (set ``torch.utils.deterministic.fill_uninitialized_memory`` after this call to
    debug with it). On CUDA, cuBLAS is reproducible only with a fixed workspace, set here unless the
    user set one (it must be before the first matrix product)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
