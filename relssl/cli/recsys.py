"""`relssl recsys train` and `relssl experiment recsys`: one flag per RecConfig field."""
from __future__ import annotations

import argparse
import functools
from dataclasses import fields
from pathlib import Path

from relssl.cli.flags import (add_config_flags, add_grid_flags, add_resume_flag, check_resume_flags, config_flags,
                              flag_values, grid_seeds, print_metrics, read_config)
from relssl.errors import RelsslError

@functools.cache
def rec_flags() -> dict:
    """RecConfig's fields as flags, the run's options before MMSSL's hyper-parameters."""
    from relssl.recsys.mmssl import MMSSLParams
    from relssl.recsys.train import RecConfig

    mmssl_only = {f.name for f in fields(MMSSLParams)}
    flags = config_flags(RecConfig)
    return {name: flags[name] for name in sorted(flags, key=lambda n: n in mmssl_only)}


def add_rec_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML with recommender options (e.g. a run's config.yaml); flags override it")
    add_config_flags(p, rec_flags())
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from relssl.recsys.train import RecConfig

    cfg = RecConfig.from_dict({**read_config(args.config), **flag_values(args, rec_flags())})
    cfg.validate()
    return cfg


def cmd_train(args: argparse.Namespace) -> None:
    from relssl.recsys.train import RecConfig, train_recsys

    changes = check_resume_flags(args, Path(args.out), flag_values(args, rec_flags()), RecConfig) \
        if args.resume else None
    cfg = None if args.resume else config_from_args(args)
    final = train_recsys(cfg, args.out, progress=not args.no_progress, resume=args.resume, changes=changes)
    print_metrics(final, f"test metrics of the best validation epoch ({args.out}/final.json)")


def cmd_experiment(args: argparse.Namespace) -> None:
    from relssl.experiments.recsys import VARIANTS, run_recsys_experiment

    seeds = grid_seeds(args)
    variants = [v.strip() for v in args.models.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise RelsslError(f"--models {args.models}: expected some of {', '.join(VARIANTS)}")
    path = run_recsys_experiment(config_from_args(args), seeds, variants, Path(args.out),
                                 ["relssl", *args.argv], progress=not args.no_progress,
                                 sweep=parse_sweep(args.sweep or []), jobs=args.jobs)
    print(path.read_text())


def parse_sweep(specs: list[str]) -> dict[str, list[float]]:
    """['adv_weight=1e-4,1e-2', 'critic_lr=3e-4,1e-3'] -> {name: values}, names being MMSSL's numeric settings."""
    from relssl.recsys.train import RecConfig

    numeric = {f.name for f in fields(RecConfig) if isinstance(f.default, float)}
    sweep = {}
    for spec in specs:
        name, _, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if name not in numeric or not values:
            raise RelsslError(f"--sweep '{spec}': expected NAME=V1,V2 with NAME one of {', '.join(sorted(numeric))}")
        sweep[name] = values
    return sweep


def add_recsys_parsers(sub) -> None:
    rec = sub.add_parser("recsys", help="multimodal recommendation: MMSSL, LightGCN, BPR-MF")
    rec_sub = rec.add_subparsers(dest="recsys_command", required=True)
    train = rec_sub.add_parser("train", help="train one recommender into a run folder")
    add_rec_flags(train)
    train.add_argument("--out", required=True, help="run folder")
    add_resume_flag(train)
    train.set_defaults(func=cmd_train)


def add_recsys_experiment_parser(exp_sub) -> None:
    from relssl.experiments.recsys import VARIANTS

    exp = exp_sub.add_parser("recsys", help="recommenders × seeds on one dataset (report.md, curves.png)")
    add_rec_flags(exp)
    exp.add_argument("--models", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    add_grid_flags(exp)
    exp.add_argument("--sweep", action="append", metavar="NAME=V1,V2",
                     help="also run MMSSL at each value (repeat for a grid, e.g. --sweep adv_weight=1e-4,1e-2 "
                          "--sweep critic_lr=3e-4,1e-3) and compare its best setting on validation with "
                          "mmssl-noadv")
    exp.add_argument("--out", required=True, help="experiment folder")
    exp.set_defaults(func=cmd_experiment)
