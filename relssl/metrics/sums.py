"""Metric accumulators added up on the model's device during an epoch and read once at its end.

A task reports a batch's accumulators as a dict of numbers, 0-d tensors, or, under a tuple of
names, a 1-d tensor holding one accumulator per name (a wide table's per-column sums in one tensor
rather than a Python loop over columns). Reading a tensor on the host makes the host wait for the
device; one read per epoch instead of one per metric per step keeps a step free of such waits.
"""
from __future__ import annotations

import torch


def add_sums(into: dict, sums: dict) -> None:
    """``into`` += ``sums``, key by key; tensors stay on their device, in float64 (an epoch's count
    of cells outgrows float32's exact integers, 2^24)."""
    for key, value in sums.items():
        if torch.is_tensor(value):
            value = value.detach().double()
        into[key] = into.get(key, 0.0) + value


def read_sums(sums: dict) -> dict[str, float]:
    """Every accumulator as a float, tensors read in one device-to-host copy; a tuple key's tensor
    is split into its names."""
    out = {key: float(value) for key, value in sums.items() if not torch.is_tensor(value)}
    tensors = [(key, value) for key, value in sums.items() if torch.is_tensor(value)]
    if not tensors:
        return out
    device = tensors[0][1].device
    values = iter(torch.cat([v.detach().reshape(-1).to(device, torch.float64) for _, v in tensors]).tolist())
    for key, value in tensors:
        names = key if isinstance(key, tuple) else (key,)
        if len(names) != value.numel():
            raise ValueError(f"accumulator {names[:2]}...: {len(names)} names for {value.numel()} values")
        for name in names:
            out[name] = out.get(name, 0.0) + next(values)
    return out
