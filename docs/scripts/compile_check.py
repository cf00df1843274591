"""Does torch.compile pay for the backbone? One MCM epoch of 30 steps (batch 512) on the default
data, eager against the row encoder and the GNN compiled (inductor, dynamic shapes), after a
warm-up epoch that compiles. Usage: python docs/scripts/compile_check.py eager|compile"""
import sys
import time

import torch

from relssl.train.pretrain import PretrainConfig, Pretrainer

mode = sys.argv[1] if len(sys.argv) > 1 else "eager"
cfg = PretrainConfig(data="synthetic-aml", objectives=["mcm"], batch_size=512, train_rows_per_epoch=512 * 30,
                     device="cpu")
trainer = Pretrainer(cfg, progress=False)
if mode == "compile":
    trainer.model.row = torch.compile(trainer.model.row, dynamic=True)
    trainer.model.gnn = torch.compile(trainer.model.gnn, dynamic=True)
start = time.perf_counter()
trainer.train_epoch(1, progress=False)
warm = time.perf_counter() - start
metrics = trainer.train_epoch(2, progress=False)
print(f"{mode}: warm-up epoch {warm:.1f} s, {metrics['rows_per_s']:,.0f} rows/s, loss {metrics['loss']:.4f}")
