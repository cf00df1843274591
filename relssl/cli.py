"""The relssl command line: generate, pretrain, demo, bench."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from relssl.errors import RelsslError  # noqa: E402

# Flags of `pretrain` that map onto PretrainConfig / ModelConfig fields (None = not given).
RUN_FLAGS = {
    "data": str, "objectives": str, "mask": str, "mask_prob": float, "cells_per_row": int, "epochs": int,
    "batch_size": int, "lr": float, "weight_decay": float, "seed": int, "split": str, "max_categories": int,
    "train_rows_per_epoch": int, "eval_rows": int, "patience": int, "device": str, "combiner": str,
    "weights": str, "text_model": str, "mask_groups": str,
}
# Combiner hyper-parameters: flag -> (combiner, option name). Defaults are the papers'.
COMBINER_FLAGS = {"moco_beta": ("moco", "beta"), "moco_beta_sigma": ("moco", "beta_sigma"),
                  "moco_gamma": ("moco", "gamma"), "moco_gamma_sigma": ("moco", "gamma_sigma"),
                  "moco_rho": ("moco", "rho"), "cagrad_c": ("cagrad", "c")}
# Objective hyper-parameters (relssl.objectives.OPTIONS): flag -> (objective, type).
OBJECTIVE_FLAGS = {"lp_negatives": ("lp", int), "ctr_prob": ("ctr", float), "ctr_temperature": ("ctr", float),
                   "dae_prob": ("dae", float), "feat2vec_negatives": ("feat2vec", int),
                   "feat2vec_alpha1": ("feat2vec", float), "feat2vec_alpha2": ("feat2vec", float),
                   "feat2vec_groups": ("feat2vec", str), "feat2vec_target": ("feat2vec", str)}
MODEL_FLAGS = {"channels": int, "row_layers": int, "heads": int, "dropout": float, "gnn": str,
               "gnn_layers": int, "fanouts": str, "reverse_mp": bool, "ports": bool, "ego_ids": bool}
# Help of the flags above; the boolean model flags each have a --no- form (not given: the config's
# value, else off).
FLAG_HELP = {
    "mask_groups": "columns masked together, e.g. 'Amount Paid+Amount Received' ('A+B;C+D'; 'none': no groups; "
                   "default: the schema's mask_groups plus columns equal in >95 %% of training rows)",
    "reverse_mp": "GNN: separate convolutions for events entering and leaving a node (Multi-GNN)",
    "ports": "GNN: each event carries its causal port numbers at both endpoints (Multi-GNN)",
    "ego_ids": "GNN: mark tree nodes that are the seed's source or target entity (Multi-GNN)",
}


def number_list(text: str, flag: str, kind=int) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RelsslError(f"{flag} '{text}': expected comma-separated {kind.__name__}s like "
                          f"{'8,4' if kind is int else '1,0.5'}") from None


def add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (e.g. a run folder's config.yaml); flags override it")
    for name, typ in {**RUN_FLAGS, **MODEL_FLAGS}.items():
        if typ is bool:
            p.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                           help=FLAG_HELP[name])
        else:
            p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=FLAG_HELP.get(name))
    for name in COMBINER_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=float, default=None)
    for name, (_, typ) in OBJECTIVE_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None)
    p.add_argument("--no-time-aware", action="store_true", help="sample neighbours regardless of time")
    p.add_argument("--no-cache", action="store_true", help="prepare the data in memory, without the preprocessed-data cache")
    p.add_argument("--cache-dir", help="preprocessed-data cache folder (default: $RELSSL_CACHE, else ./data/cache)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip malformed lines of line-based inputs (Amazon reviews) with a counted warning")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, **overrides):
    import yaml

    from relssl.objectives import parse_objectives
    from relssl.train.pretrain import PretrainConfig

    raw: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise RelsslError(f"--config {path}: file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise RelsslError(f"--config {path}: malformed YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise RelsslError(f"--config {path}: expected a mapping of option names to values")
    raw.update(overrides)
    for name in RUN_FLAGS:
        if getattr(args, name, None) is not None:
            raw[name] = getattr(args, name)
    if isinstance(raw.get("weights"), str):
        raw["weights"] = number_list(raw["weights"], "--weights", float)
    options = dict(raw.get("combiner_options") or {})
    for name, (combiner, option) in COMBINER_FLAGS.items():
        if getattr(args, name, None) is not None:
            if raw.get("combiner", "sum") != combiner:
                raise RelsslError(f"--{name.replace('_', '-')} needs --combiner {combiner}")
            options[option] = getattr(args, name)
    raw["combiner_options"] = options
    objective_options = dict(raw.get("objective_options") or {})
    for name, (objective, _) in OBJECTIVE_FLAGS.items():
        if getattr(args, name, None) is not None:
            if objective not in parse_objectives(raw.get("objectives", "mcm")):
                raise RelsslError(f"--{name.replace('_', '-')} needs {objective} in --objectives")
            objective_options[name] = getattr(args, name)
    raw["objective_options"] = objective_options
    model = dict(raw.get("model") or {})
    for name in MODEL_FLAGS:
        if getattr(args, name, None) is not None:
            model[name] = number_list(args.fanouts, "--fanouts") if name == "fanouts" else getattr(args, name)
    raw["model"] = model
    if args.no_time_aware:
        raw["time_aware"] = False
    if args.no_cache:
        raw["cache"] = False
    if args.cache_dir:
        raw["cache_dir"] = args.cache_dir
    if args.skip_bad_rows:
        raw["skip_bad_rows"] = True
    cfg = PretrainConfig.from_dict(raw)
    cfg.validate()
    return cfg


def print_metrics(metrics: dict[str, float], title: str) -> None:
    """Each metric beside its trivial reference where it has one; a metric's per-column values
    (<objective>/<metric>/<column> beside <objective>/<metric>) are left to the run's final.json."""
    from relssl.eval.plots import reference_key

    def per_column(key: str) -> bool:
        return key.count("/") >= 2 and key.rsplit("/", 1)[0] in metrics

    shown = {k: v for k, v in metrics.items() if not per_column(k) and not k.split("/")[-1].endswith("_ref")}
    print(f"\n{title}")
    width = max(len(k) for k in shown)
    print(f"{'metric':<{width}}  value    reference")
    print(f"{'-' * width}  -------  ---------")
    for key, value in shown.items():
        text = f"{value:.4f}" if isinstance(value, float) else f"{value}"
        ref = metrics.get(reference_key(key))
        print(f"{key:<{width}}  {text:<7}  {ref:.4f}" if ref is not None else f"{key:<{width}}  {text}")
    if any(per_column(k) for k in metrics):
        print("(per-column metrics: the run folder's final.json)")


def cmd_generate(args: argparse.Namespace) -> None:
    from relssl.data.aml_generator import PRESETS, write_aml

    def number(text: str | None, flag: str, kind, valid, expected: str):
        """``text`` as ``kind`` (None stays None: the preset's value), or one clear error naming the flag."""
        if text is None:
            return None
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise RelsslError(f"{flag} {text}: expected {expected}")
        return value

    if args.preset not in PRESETS:
        raise RelsslError(f"--preset {args.preset}: expected one of {', '.join(PRESETS)}")
    rows = number(args.rows, "--rows", int, lambda v: v >= 1, "a positive integer")
    rate = number(args.laundering_rate, "--laundering-rate", float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
    seed = number(args.seed, "--seed", int, lambda v: v >= 0, "a non-negative integer")
    trans, patterns = write_aml(Path(args.out), rows=rows, seed=seed, laundering_rate=rate, name=args.name,
                                preset=args.preset)
    print(f"wrote {trans} and {patterns}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from relssl.train.pretrain import pretrain

    if args.out is None:
        raise RelsslError("--out: a run folder is required, e.g. --out runs/mcm")
    cfg = None if args.resume else config_from_args(args)
    final = pretrain(cfg, args.out, resume=args.resume, progress=not args.no_progress, epochs=args.epochs)
    print_metrics(final, f"test metrics of the best validation epoch ({args.out}/final.json)")


def cmd_demo(args: argparse.Namespace) -> None:
    from relssl.train.pretrain import pretrain

    out = Path(args.out)
    if (out / "config.yaml").exists():
        shutil.rmtree(out)  # the demo's own scratch run
    cfg = config_from_args(args, data="synthetic-aml", objectives=["mcm"], epochs=3,
                           train_rows_per_epoch=20_000, eval_rows=10_000)
    print(f"relssl demo: masked cell modelling ({cfg.mask} masks) on the bundled synthetic AML data")
    final = pretrain(cfg, out, progress=not args.no_progress)
    print_metrics(final, f"test metrics (run folder: {out})")


def cmd_experiment_masks(args: argparse.Namespace) -> None:
    from relssl.data.datasets import load_dataset
    from relssl.experiments.masks import run_mask_experiment

    if args.seeds < 1:
        raise RelsslError(f"--seeds {args.seeds}: expected a positive number of seeds")
    overrides = {}
    if args.objectives is None:
        graph = load_dataset(args.data or "synthetic-aml", args.skip_bad_rows).has_graph
        overrides["objectives"] = ["mcm", "am", "mv"] if graph else ["mcm", "mv"]
    cfg = config_from_args(args, **overrides)
    path = run_mask_experiment(cfg, list(range(args.seeds)), Path(args.out), ["relssl", *args.argv],
                               progress=not args.no_progress)
    print(path.read_text())


def cmd_experiment_combos(args: argparse.Namespace) -> None:
    from relssl.experiments.combos import run_combo_experiment
    from relssl.multitask import COMBINERS

    combiners = [c.strip() for c in args.combiners.split(",") if c.strip()]
    known = [c for c in COMBINERS if c != "weighted"] + ["tuned"]
    if not combiners or any(c not in known for c in combiners):
        raise RelsslError(f"--combiners '{args.combiners}': expected a comma-separated subset of {', '.join(known)} "
                          f"(tuned: a static weighted sum with its weight chosen on validation)")
    if args.seeds < 1:
        raise RelsslError(f"--seeds {args.seeds}: expected a positive number of seeds")
    cfg = config_from_args(args)
    path = run_combo_experiment(cfg, combiners, list(range(args.seeds)), Path(args.out), ["relssl", *args.argv],
                                progress=not args.no_progress)
    print(path.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relssl", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic data")
    gen_sub = gen.add_subparsers(dest="kind", required=True)
    aml = gen_sub.add_parser("aml", help="IBM AMLworld-format transactions with laundering patterns")
    aml.add_argument("--preset", default="default",
                     help="default (the bundled synthetic-aml), hi-small or li-small: IBM's files' headline statistics")
    aml.add_argument("--rows", help="override the preset's number of transactions")
    aml.add_argument("--seed", default="0")
    aml.add_argument("--laundering-rate", help="override the preset's share of laundering rows, e.g. 0.001")
    aml.add_argument("--name", default="Synthetic", help="file prefix: <name>_Trans.csv, <name>_Patterns.txt")
    aml.add_argument("--out", required=True)
    aml.set_defaults(func=cmd_generate)

    pre = sub.add_parser("pretrain", help="self-supervised pre-training into a run folder")
    add_run_flags(pre)
    pre.add_argument("--out", help="run folder")
    pre.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    pre.set_defaults(func=cmd_pretrain)

    demo = sub.add_parser("demo", help="a short MCM pre-training on the bundled synthetic AML data")
    add_run_flags(demo)
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(func=cmd_demo)

    exp = sub.add_parser("experiment", help="multi-seed comparison tables and plots")
    exp_sub = exp.add_subparsers(dest="experiment", required=True)
    masks = exp_sub.add_parser("masks", help="MCM/AM/MV metrics under each mask type (report.md, curves.png)")
    add_run_flags(masks)
    masks.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    masks.add_argument("--out", required=True, help="experiment folder")
    masks.set_defaults(func=cmd_experiment_masks)
    combos = exp_sub.add_parser("combos", help="every objective subset with MCM × combiners (report.md, curves.png)")
    add_run_flags(combos)
    combos.add_argument("--combiners", default="sum,moco",
                        help="comma-separated combiners to compare: sum, uw, moco, pcgrad, cagrad, and tuned "
                             "(a static weighted sum, the other tasks' weight chosen on validation)")
    combos.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    combos.add_argument("--out", required=True, help="experiment folder")
    combos.set_defaults(func=cmd_experiment_combos)

    from relssl.bench import add_bench_parser

    add_bench_parser(sub)
    from relssl.bench_tasks import add_bench_tasks_parser

    add_bench_tasks_parser(sub)
    # Multimodal recommendation: relssl recsys train, relssl experiment recsys.
    from relssl.recsys.cli import add_recsys_experiment_parser, add_recsys_parsers

    add_recsys_parsers(sub)
    add_recsys_experiment_parser(exp_sub)
    # Downstream evaluation: relssl finetune, relssl embed, relssl experiment downstream.
    from relssl.eval.commands import add_downstream_experiment_parser, add_embed_parser, add_finetune_parser

    add_finetune_parser(sub)
    add_embed_parser(sub)
    add_downstream_experiment_parser(exp_sub)
    # Feat2Vec: relssl feat2vec, relssl experiment feat2vec.
    from relssl.train.feat2vec_cli import add_feat2vec_parsers

    add_feat2vec_parsers(sub, exp_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # reports name the exact command that regenerates them
    # A library warning (a skipped line, twin columns) reads as one line, not as source code.
    warnings.formatwarning = lambda message, *_, **__: f"relssl: warning: {message}\n"
    try:
        args.func(args)
    except RelsslError as err:
        if args.debug:
            raise
        print(f"relssl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("relssl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
