"""`relssl feat2vec` and `relssl experiment feat2vec`: one flag per Feat2VecConfig field, derived
from the dataclass."""
from __future__ import annotations

import argparse
from pathlib import Path

from relssl.cli.flags import (add_config_flags, add_grid_flags, add_resume_flag, check_resume_flags, config_flags,
                              flag_values, grid_seeds, print_metrics, read_config)
from relssl.errors import RelsslError
from relssl.train.feat2vec import Feat2VecConfig

FLAGS = config_flags(Feat2VecConfig)  # field -> (flag type, default, help), from the dataclass


def feat2vec_config(args: argparse.Namespace) -> Feat2VecConfig:
    raw = read_config(args.config)
    raw.update(flag_values(args, FLAGS))
    return Feat2VecConfig.from_dict(raw)


def cmd_feat2vec(args: argparse.Namespace) -> None:
    from relssl.train.feat2vec import Feat2VecConfig, train_feat2vec

    changes = check_resume_flags(args, Path(args.out), flag_values(args, FLAGS), Feat2VecConfig) \
        if args.resume else None
    cfg = None if args.resume else feat2vec_config(args)
    final = train_feat2vec(cfg, args.out, progress=not args.no_progress, resume=args.resume, changes=changes)
    print_metrics(final, f"test metrics of the best validation epoch ({args.out}/final.json)")


def cmd_experiment_feat2vec(args: argparse.Namespace) -> None:
    from relssl.experiments.feat2vec import run_feat2vec_experiment
    from relssl.masking import MASK_TYPES
    from relssl.nn.backbone import ModelConfig
    from relssl.train.pretrain import PretrainConfig

    seeds = grid_seeds(args)
    if args.mcm_epochs < 1:
        raise RelsslError(f"--mcm-epochs {args.mcm_epochs}: expected a positive integer")
    if args.mcm_mask not in MASK_TYPES:
        raise RelsslError(f"--mcm-mask '{args.mcm_mask}': expected one of {', '.join(MASK_TYPES)}")
    cfg = feat2vec_config(args)
    mcm = PretrainConfig(data=cfg.data, table=cfg.table, objectives=["mcm"], mask=args.mcm_mask, epochs=args.mcm_epochs,
                         seed=cfg.seed, split=cfg.split, max_categories=cfg.max_categories,
                         train_rows_per_epoch=cfg.train_rows_per_epoch, eval_rows=cfg.eval_rows, device=cfg.device,
                         model=ModelConfig(channels=cfg.channels))
    mcm.validate()
    path = run_feat2vec_experiment(cfg, seeds, Path(args.out), ["relssl", *args.argv], mcm,
                                   args.supervised, progress=not args.no_progress)
    print(path.read_text())


def add_feat2vec_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML with Feat2Vec options (e.g. a run's config.yaml); flags override it")
    add_config_flags(p, FLAGS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_feat2vec_parsers(sub, exp_sub) -> None:
    p = sub.add_parser("feat2vec", help="Feat2Vec on one event table (run folder with MPR of held-out groups)")
    add_feat2vec_flags(p)
    p.add_argument("--out", required=True, help="run folder")
    add_resume_flag(p)
    p.set_defaults(func=cmd_feat2vec)
    e = exp_sub.add_parser("feat2vec", help="MPR table: Feat2Vec vs popularity vs MCM (report.md)")
    add_feat2vec_flags(e)
    add_grid_flags(e, seeds=1, jobs=False)
    e.add_argument("--mcm-epochs", type=int, default=3, help="epochs of the MCM baseline's pre-training")
    e.add_argument("--mcm-mask", default="remove", help="mask type of the MCM baseline")
    e.add_argument("--supervised", action="store_true",
                   help="also train one supervised Feat2Vec per evaluated group (only that group is corrupted)")
    e.add_argument("--out", required=True, help="experiment folder")
    e.set_defaults(func=cmd_experiment_feat2vec)
