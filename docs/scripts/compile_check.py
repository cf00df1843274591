"""Does torch.compile pay for the backbone? One MCM + LP epoch (default model) on the default data,
eager against the row encoder and the GNN compiled (inductor, dynamic shapes), after a warm-up epoch
that compiles. Usage: python docs/scripts/compile_check.py eager|compile [--device cpu|cuda]
[--batch-size 512] [--steps 30]"""
import argparse
import time

import torch

from relssl.train.pretrain import PretrainConfig, Pretrainer

parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=["eager", "compile"])
parser.add_argument("--device", default="cpu")
parser.add_argument("--batch-size", type=int, default=512)
parser.add_argument("--steps", type=int, default=30)
args = parser.parse_args()
cfg = PretrainConfig(data="synthetic-aml", objectives=["mcm", "lp"], batch_size=args.batch_size,
                     train_rows_per_epoch=args.batch_size * args.steps, device=args.device)
trainer = Pretrainer(cfg, progress=False)
if args.mode == "compile":
    trainer.model.row = torch.compile(trainer.model.row, dynamic=True)
    trainer.model.gnn = torch.compile(trainer.model.gnn, dynamic=True)
start = time.perf_counter()
trainer.train_epoch(1, progress=False)
warm = time.perf_counter() - start
metrics = trainer.train_epoch(2, progress=False)
print(f"{args.mode} ({args.device}, batch {args.batch_size}): warm-up epoch {warm:.1f} s, "
      f"{metrics['rows_per_s']:,.0f} rows/s, loss {metrics['loss']:.4f}")
