"""Where a pre-training step's time goes: torch.profiler over a few MCM + LP steps (default model,
input built in the loop, no workers) on generated AML data. Prints the operators with the most
device time and the most host time, the kernels launched per step and how much of a step's wall
time the device was busy. Usage:
python docs/scripts/profile_step.py [--rows 1000000] [--batch-size 4096] [--precision fp32] [--device cuda]"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from relssl.bench import generated_prep
from relssl.train.pretrain import PretrainConfig, Pretrainer, device_clock

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=1_000_000)
parser.add_argument("--batch-size", type=int, default=4096)
parser.add_argument("--precision", default="fp32")
parser.add_argument("--device", default="cuda")
parser.add_argument("--steps", type=int, default=5)
args = parser.parse_args()

prep = generated_prep(args.rows)
cfg = PretrainConfig(data="synthetic-aml", objectives=["mcm", "lp"], batch_size=args.batch_size, device=args.device,
                     workers=0, precision=args.precision, train_rows_per_epoch=3 * args.batch_size)
trainer = Pretrainer(cfg, prep)
trainer.train_epoch(1, progress=False)  # warm-up
cfg.train_rows_per_epoch = args.steps * args.batch_size
cuda = trainer.device.type == "cuda"
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
start = device_clock(trainer.device)
with profile(activities=activities) as prof:
    trainer.train_epoch(2, progress=False)
wall = (device_clock(trainer.device) - start) / args.steps
events = prof.key_averages()
device_key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
if cuda:
    print(events.table(sort_by=device_key, row_limit=30))
print(events.table(sort_by="self_cpu_time_total", row_limit=30))
kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
busy = sum(e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total for e in kernels) / 1e6
print(f"batch {args.batch_size}, {args.precision}: {wall * 1e3:.1f} ms a step (profiled), "
      f"{len(kernels) / args.steps:.0f} device kernels a step, device busy {busy / args.steps * 1e3:.1f} ms a step "
      f"({busy / (wall * args.steps):.0%} of the wall time)" if cuda else f"{wall * 1e3:.1f} ms a step (profiled)")
