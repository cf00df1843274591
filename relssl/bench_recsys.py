"""`relssl bench --recsys`: MMSSL's training cost on Amazon-Baby at the original's shapes.

The interactions are the LATTICE/MMSSL split of ../shared/data (19,445 users, 7,050 items,
119,674 training interactions); the image and text features the original reads (4,096-d and
1,024-d per item) are not available here, so random matrices of those shapes stand in: the cost
of a step does not depend on the values. Batch 1,024 users and embedding size 64, as the original.
The end-of-epoch rebuild of the modality graphs is timed, then ``--steps`` training steps (and a
rebuild) after a warm-up step; the epoch is extrapolated from them (the original's epoch has the same number of
steps: training interactions / batch + 1).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from relssl.recsys.datasets import load_recsys_data
from relssl.recsys.train import RecConfig, RecTrainer, peak_rss_mib

FEATURES = {"image": 4096, "text": 1024}  # the original's Amazon-Baby feature widths


def bench_recsys(steps: int, device: str = "cpu") -> dict:
    data = load_recsys_data("amazon_baby", None, None)
    rng = np.random.default_rng(0)
    data = dataclasses.replace(data, features={name: rng.standard_normal((data.n_items, width), dtype=np.float32)
                                               for name, width in FEATURES.items()})
    trainer = RecTrainer(RecConfig(data="amazon_baby", device=device), data)
    per_epoch = trainer.steps_per_epoch
    cuda = trainer.device.type == "cuda"

    def wait() -> float:
        if cuda:
            torch.cuda.synchronize(trainer.device)
        return time.perf_counter()

    trainer.steps_per_epoch = 1
    trainer.train_epoch(0)  # warm-up: first-call allocations and kernel choices
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    start = wait()
    trainer.model.refresh()
    refresh_s = wait() - start
    trainer.steps_per_epoch = steps
    start = wait()
    metrics = trainer.train_epoch(1)  # the steps, then the rebuild
    step_s = (wait() - start - refresh_s) / steps
    out = {"data": f"amazon_baby ({data.n_users:,} users, {data.n_items:,} items; random "
                   f"{' and '.join(f'{w}-d {n}' for n, w in FEATURES.items())} features)",
           "device": str(trainer.device), "threads": torch.get_num_threads(),
           "batch_size": trainer.cfg.batch_size, "dim": trainer.cfg.dim, "steps_per_epoch": per_epoch,
           "step_s": step_s, "refresh_s": refresh_s, "epoch_s": per_epoch * step_s + refresh_s,
           "loss": metrics["loss"], "peak_rss_mib": peak_rss_mib()}
    if cuda:
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**20
    return out


def cmd_bench_recsys(steps: int, device: str, out: str | None) -> None:
    result = bench_recsys(steps, device)
    print(f"MMSSL on {result['data']}, batch {result['batch_size']}, dim {result['dim']}, {result['device']}, "
          f"{result['threads']} threads\n")
    print("| measure | value |\n|---|---|")
    for key in ("steps_per_epoch", "step_s", "refresh_s", "epoch_s", "peak_rss_mib", "peak_cuda_mib"):
        if key in result:
            value = result[key]
            print(f"| {key} | {value:,.2f} |" if isinstance(value, float) else f"| {key} | {value:,} |")
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
