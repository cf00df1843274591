"""relssl bench and relssl bench-tasks: throughput, memory and per-task step costs."""
from __future__ import annotations

import argparse

from relssl.bench import cmd_bench
from relssl.bench_peers import PEERS, cmd_bench_peers
from relssl.bench_recsys import cmd_bench_recsys
from relssl.bench_tasks import COMBINERS, OBJECTIVE_SETS, TASK_SETS, cmd_bench_tasks
from relssl.errors import RelsslError


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="throughput and peak memory on generated AML data")
    p.add_argument("--rows", default="100000,1000000", help="comma-separated data sizes")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--batch-size", type=int, default=512, help="seed rows per step (default: 512)")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--epoch", action="store_true",
                   help="one MCM+LP epoch through generate, cache ingestion and training (e.g. --rows 5000000)")
    p.add_argument("--max-steps", type=int, help="with --epoch: time this many steps and extrapolate the epoch")
    p.add_argument("--text", metavar="DATA", help="measure text columns on this dataset (e.g. amazon_fashion) instead")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (CUDA figures add peak_cuda_mib)")
    p.add_argument("--workers", type=int, help="input-pipeline threads of the training loop (default: the "
                                                "run's: 1 on CUDA, 0 on the CPU)")
    p.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (CUDA)")
    p.add_argument("--loop", metavar="SETTINGS",
                   help="the MCM+LP training loop on the first --rows, for each BATCH:WORKERS:PRECISION setting "
                        "(comma-separated, e.g. '512:1:fp32,4096:4:bf16'; they replace --batch-size, --workers and --precision): "
                        "rows/s, input waits, peak memory, GPU busy")
    p.add_argument("--peers", action="store_true",
                   help="denoising pre-training on one wide table (../shared/data's Ethereum fraud table): relssl's "
                        "row encoders beside the peer libraries installed (pytorch-tabular, pytorch-widedeep)")
    p.add_argument("--repeats", type=int, default=1,
                   help="with --peers: run every library this many times in turn and report the median (rates "
                        "drift between runs on a shared machine)")
    p.add_argument("--libraries", help=f"with --peers: only these, comma-separated (default: all of {', '.join(PEERS)})")
    p.add_argument("--recsys", action="store_true",
                   help="MMSSL's epoch on Amazon-Baby (../shared/data) with random features of the original's shapes "
                        "(4096-d image, 1024-d text): seconds per step and epoch, peak memory")
    p.add_argument("--relational", action="store_true",
                   help="MCM on a generated 3-table database (first --rows orders) read as rows linked by keys, "
                        "against its orders read as events")
    p.add_argument("--reading", default="database", help=argparse.SUPPRESS)
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> None:
    if args.libraries and not args.peers:
        raise RelsslError("--libraries picks libraries of --peers: add --peers")
    if args.peers:
        cmd_bench_peers(args.steps, args.batch_size, args.out, args.repeats,
                        args.libraries.split(",") if args.libraries else None)
    elif args.recsys:
        cmd_bench_recsys(args.steps, args.device, args.out)
    else:
        cmd_bench(args)


def add_bench_tasks_parser(sub) -> None:
    p = sub.add_parser("bench-tasks", help="training-step time of each pretext task and each combiner")
    p.add_argument("--data", default="synthetic-aml", help="built-in name, IBM AML CSV or YAML schema")
    p.add_argument("--objectives", default=";".join(OBJECTIVE_SETS),
                   help="';'-separated objective sets to time with --combiner sum (ratios to 'mcm')")
    p.add_argument("--task-sets", default=";".join(TASK_SETS), help="';'-separated task sets for the combiners")
    p.add_argument("--combiners", default=",".join(COMBINERS), help="comma-separated combiners (ratios to 'sum')")
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--batch-size", type=int, default=512, help="seed rows per step (default: 512)")
    p.add_argument("--seed", type=int, default=0, help="fixes the data split, batches and initialisation")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--repeated-pairs", action=argparse.BooleanOptionalAction, default=True,
                   help="also time MCM and MCM+LP on generated events between 60 pairs that repeat thousands of times")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.set_defaults(func=cmd_bench_tasks)
