"""Data-parallel pre-training with torch.distributed, as launched by ``torchrun``.

Every rank builds the same model from the same seed and walks the same global batches; rank r
takes the r-th contiguous shard of each batch's seed rows. Gradients are all-reduced explicitly
rather than by DistributedDataParallel, because gradient combiners (MoCo, PCGrad, CAGrad) need
each task's gradient of the shared parameters: those are reduced before the combiner runs, so
its state (MoCo's Y, λ and step) evolves identically on every rank. Each rank's gradients are
weighted by its share of the global batch, which makes the reduced gradient that of the
single-process loss whenever the loss is a mean over rows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from relssl.metrics.sums import read_sums


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder and logs."""
        return self.rank == 0

    def shard(self, rows: Tensor) -> Tensor:
        """This rank's contiguous, disjoint part of a global batch (sizes differ by at most one)."""
        return rows.tensor_split(self.size)[self.rank] if self.enabled else rows

    def all_reduce(self, tensor: Tensor) -> Tensor:
        """Sum over ranks, in place (identity on one process)."""
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_world(device: str) -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, MASTER_ADDR...);
    a plain run is a world of one. NCCL when training on CUDA, gloo on CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:  # each rank on its own GPU, known to NCCL before its first collective (barrier)
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def reduce_sums(world: World, sums: list[dict]) -> list[dict]:
    """Each task's metric accumulators read to the host (relssl.metrics.sums), then added over ranks
    (every objective reports the same keys on every rank)."""
    sums = [read_sums(s) for s in sums]
    if not world.enabled:
        return sums
    keys = [sorted(s) for s in sums]
    # on the rank's GPU under NCCL, which reduces no host tensor
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    flat = torch.tensor([float(s[k]) for s, ks in zip(sums, keys) for k in ks], dtype=torch.float64, device=device)
    count = torch.tensor([len(flat)], dtype=torch.long, device=device)
    world.all_reduce(count)
    if int(count) != len(flat) * world.size:
        raise RuntimeError("ranks disagree on their metric accumulators")
    world.all_reduce(flat)
    values = iter(flat.tolist())
    return [{k: next(values) for k in ks} for ks in keys]
