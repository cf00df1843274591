"""Run flags shared by every training command: defined from PretrainConfig / ModelConfig fields,
parsed into a config (a --config YAML first, flags over it), and the printed metrics table."""
from __future__ import annotations

import argparse
from pathlib import Path

from relssl.errors import RelsslError

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
    from relssl.metrics import reference_key

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
