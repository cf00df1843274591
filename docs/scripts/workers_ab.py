"""The training loop with and without its input pipeline, in one process: epochs of the same run
under ``--workers 0``, ``--workers 1`` and one input thread that runs a single torch thread, in
alternating order (this machine's speed drifts by ±15 % between runs, more than the differences
measured). Each epoch is ``--steps`` steps of 512 rows, timed as a run trains; the figure is the
epoch's rows/s, and the medians over ``--rounds`` rounds.

Usage: python docs/scripts/workers_ab.py [--objectives mcm] [--rows 1000000] [--steps 30]
       [--rounds 3] [--threads 2]"""
import argparse
import statistics

import torch

from relssl.bench import generated_prep
from relssl.train.pretrain import PretrainConfig, Pretrainer


class OneThreadInput(Pretrainer):
    """The input thread sets its own torch thread count (OpenMP's is per thread): one, so that on
    2 cores its kernels do not take the step's second core."""

    def thread_device(self):
        return lambda: torch.set_num_threads(1)


parser = argparse.ArgumentParser()
parser.add_argument("--objectives", default="mcm")
parser.add_argument("--rows", type=int, default=1_000_000)
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)

prep = generated_prep(args.rows, 0)
trainers = {}
for name, workers, cls in (("workers 0", 0, Pretrainer), ("workers 1", 1, Pretrainer),
                           ("workers 1, one torch thread", 1, OneThreadInput)):
    cfg = PretrainConfig(data="synthetic-aml", objectives=args.objectives.split(","), batch_size=512, seed=0,
                         workers=workers, train_rows_per_epoch=3 * 512)
    trainer = cls(cfg, prep)
    trainer.train_epoch(1, progress=False)  # warm-up: allocator, lazy indexes
    cfg.train_rows_per_epoch = args.steps * 512
    trainers[name] = trainer

rates = {name: [] for name in trainers}
for round_ in range(args.rounds):
    for name, trainer in trainers.items():
        rates[name].append(trainer.train_epoch(2 + round_, progress=False)["rows_per_s"])
print(f"{args.objectives}, {args.rows:,} rows, batch 512, {args.threads} threads, {args.steps} steps an epoch")
print("| setting | rows/s, median | each round |\n|---|---|---|")
for name, values in rates.items():
    print(f"| {name} | {statistics.median(values):,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
