"""The downstream commands: `relssl finetune`, `relssl embed`, `relssl experiment downstream`.

Parsers only import what they run when they run it, so `relssl --help` stays fast.
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import asdict
from pathlib import Path

from relssl.cli.flags import (COMBINER_FLAGS, OBJECTIVE_FLAGS, add_grid_flags, add_resume_flag, add_run_flags,
                              check_resume_flags, config_from_args, grid_seeds, number_list, print_metrics, read_config,
                              run_flag_values)
from relssl.data.splits import PROTOCOLS
from relssl.errors import RelsslError
from relssl.objectives import parse_objectives


def training_config(args: argparse.Namespace, raw: dict | None = None):
    """Flags over a pre-trained run's data and model settings (over ``raw``, a fine-tuning
    config's training settings, where given); flags that contradict them are reported by the
    compatibility check."""
    from relssl.eval.finetune import INHERITED, pretrained_config

    inherited = {}
    if args.init != "scratch":
        pre = asdict(pretrained_config(args.init))
        inherited = {k: pre[k] for k in INHERITED}
        if "time_aware" not in (raw or {}):  # its neighbour sampling, unless the fine-tuning config says
            inherited["time_aware"] = pre["time_aware"]
    if args.protocol is not None:  # the downstream name of sampling with or without a time bound
        if args.protocol == "causal" and args.time_aware is not None:  # the switch --no-time-aware was given
            raise RelsslError("--protocol causal contradicts --no-time-aware (transductive sampling); give one")
        inherited["time_aware"] = args.protocol == "causal"
    return config_from_args(args, raw, **inherited)


# The fine-tuning settings beside the training ones, and their defaults (a --config may give them).
FINETUNE_SETTINGS = {"task": None, "task_type": None, "init": "scratch", "mode": "finetune", "label_fraction": 1.0,
                     "trees": "default"}


def finetune_file(args: argparse.Namespace) -> dict | None:
    """A fine-tuning run's config.yaml given as --config (its settings under ``train``, its task
    beside them): each fine-tuning setting a flag leaves unset is taken from it (else its default)
    and its training settings are returned for the flags to override; None for a pre-training
    config, read as the training settings."""
    from relssl.eval.finetune import FinetuneConfig
    from relssl.options import coerce

    raw = read_config(args.config)
    fine = isinstance(raw.get("train"), dict)
    if fine and set(raw) - {"train", *FINETUNE_SETTINGS}:
        raise RelsslError(f"--config {args.config}: unknown fine-tuning keys {sorted(set(raw) - {'train', *FINETUNE_SETTINGS})}; "
                          f"expected train and some of {', '.join(FINETUNE_SETTINGS)}")
    hints = typing.get_type_hints(FinetuneConfig)
    for key, default in FINETUNE_SETTINGS.items():
        if getattr(args, key) is None:
            setattr(args, key, coerce(raw[key], hints[key], f"--config {args.config}: {key}")
                    if fine and key in raw else default)
    return raw["train"] if fine else None


def cmd_finetune(args: argparse.Namespace) -> None:
    from relssl.eval.finetune import FinetuneConfig, finetune
    from relssl.train.pretrain import portable

    if args.resume:
        init = None if args.init is None else portable(args.init)  # as the run saved it
        changes = check_resume_flags(args, Path(args.out), {**run_flag_values(args, "train."), "task": args.task,
                                                  "task_type": args.task_type, "trees": args.trees, "init": init,
                                                  "mode": args.mode, "label_fraction": args.label_fraction,
                                                  **({"train.time_aware": args.protocol == "causal"}
                                                     if args.protocol else {})},
                           FinetuneConfig, options_at="train")
        cfg = None
    else:
        changes = None
        train = finetune_file(args)
        cfg = FinetuneConfig(task=args.task, init=args.init, mode=args.mode, label_fraction=args.label_fraction,
                             train=training_config(args, train), task_type=args.task_type, trees=args.trees)
    final = finetune(cfg, args.out, progress=not args.no_progress, resume=args.resume, changes=changes)
    print_metrics(final, f"downstream metrics ({args.out}/final.json)")


def cmd_embed(args: argparse.Namespace) -> None:
    from relssl.embed import export_embeddings

    table = export_embeddings(args.run, args.out, args.data, args.device, args.table, args.on_bad_values)
    counts = table["kind"].value_counts()
    dims = sum(c.startswith("emb_") for c in table.columns)
    if "row" in counts:
        print(f"wrote {args.out}: {counts['row']:,} embeddings of table '{table['table'].iloc[0]}' rows "
              f"of {dims} dimensions")
    else:
        print(f"wrote {args.out}: {counts.get('node', 0):,} node and {counts.get('event', 0):,} event embeddings "
              f"of {dims} dimensions")


def cmd_experiment_downstream(args: argparse.Namespace) -> None:
    from relssl.experiments.downstream import run_downstream_experiment

    fractions = number_list(args.label_fractions, "--label-fractions", float)
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise RelsslError(f"--label-fractions '{args.label_fractions}': expected fractions in (0, 1] like 0.01,0.1,1")
    seeds = grid_seeds(args)
    if args.finetune_epochs < 1:
        raise RelsslError(f"--finetune-epochs {args.finetune_epochs}: expected a positive integer")
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols or any(p not in PROTOCOLS for p in protocols) or len(set(protocols)) < len(protocols):
        raise RelsslError(f"--protocols '{args.protocols}': expected a comma-separated subset of {', '.join(PROTOCOLS)}")
    if args.recipes is None:
        overrides = {"objectives": args.pretrain_objectives} if args.pretrain_objectives else {}
        recipes = [config_from_args(args, **overrides)]
    else:
        recipes = recipes_from_args(args)
    path = run_downstream_experiment(recipes, args.task, sorted(fractions), seeds, Path(args.out),
                                     ["relssl", *args.argv], args.finetune_epochs, progress=not args.no_progress,
                                     protocols=sorted(protocols, key=PROTOCOLS.index),
                                     per_recipe=args.recipes is not None, trees=args.trees or "default", jobs=args.jobs)
    print(path.read_text())


def recipes_from_args(args: argparse.Namespace) -> list:
    """One pre-training config per --recipes entry ('mcm; mcm,lp:weighted:1,0.1'): the shared flags,
    and each recipe's objectives, combiner and weights; a combiner's option flags (--moco-beta) go
    to the recipes of that combiner, an objective's (--lp-negatives) to the recipes with it."""
    from dataclasses import replace

    given = [flag for flag, value in (("--pretrain-objectives", args.pretrain_objectives),
                                      ("--combiner", args.combiner), ("--weights", args.weights)) if value]
    config = read_config(args.config)
    keys = [key for key, default in (("combiner", "sum"), ("weights", None), ("combiner_options", {}))
            if config.get(key, default) not in (default, None)]
    given += [f"{', '.join(keys)} from --config {args.config}"] if keys else []
    if given:
        raise RelsslError(f"--recipes names each recipe's objectives, combiner and weights; drop {', '.join(given)}")
    parsed = []
    for text in args.recipes.split(";"):
        fields = [f.strip() for f in text.split(":")]
        if not fields[0] or len(fields) > 3:
            raise RelsslError(f"--recipes '{args.recipes}': expected ';'-separated OBJECTIVES[:COMBINER[:WEIGHTS]], "
                              f"e.g. 'mcm; mcm,lp:weighted:1,0.1'")
        try:
            parsed.append((text.strip(), parse_objectives(fields[0]), fields[1] if len(fields) > 1 else "sum",
                           number_list(fields[2], "--weights", float) if len(fields) == 3 else None))
        except RelsslError as error:
            raise RelsslError(f"--recipes recipe '{text.strip()}': {error}") from None
    options: dict[str, dict] = {}
    for name, (combiner, option, _, _) in COMBINER_FLAGS.items():
        if getattr(args, name) is not None:
            if combiner not in (c for _, _, c, _ in parsed):
                raise RelsslError(f"--{name.replace('_', '-')}: no recipe in --recipes uses {combiner}")
            options.setdefault(combiner, {})[option] = getattr(args, name)
    # the shared flags over every recipe's objectives (so each objective's flags are accepted)
    shared = argparse.Namespace(**{**vars(args), **dict.fromkeys(COMBINER_FLAGS)})
    base = config_from_args(shared, objectives=list(dict.fromkeys(t for _, objectives, _, _ in parsed
                                                                  for t in objectives)))
    recipes = []
    for text, objectives, combiner, weights in parsed:
        own = {k: v for k, v in base.objective_options.items()
               if k not in OBJECTIVE_FLAGS or OBJECTIVE_FLAGS[k][0] in objectives}
        cfg = replace(base, objectives=objectives, combiner=combiner, weights=weights,
                      combiner_options=options.get(combiner, {}), objective_options=own)
        try:
            cfg.validate()
        except RelsslError as error:
            raise RelsslError(f"--recipes recipe '{text}': {error}") from None
        recipes.append(cfg)
    return recipes


TASK_HELP = ("KIND:COLUMN with KIND edge or node (binary), edge-multiclass, node-multiclass, edge-regression or "
             "node-regression, e.g. 'edge:Is Laundering'; or, on a database, TABLE.COLUMN, e.g. 'surveys.weight' "
             "(default: the dataset's first label column)")


def add_trees_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trees", choices=("default", "tuned"), default=None,
                   help="gbdt modes: LightGBM's defaults, or tuned on the validation rows (a grid of tree and leaf "
                        "sizes, rounds stopped early on validation; relssl.eval.baseline.TREE_GRID) (default: default)")


def add_finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="train and evaluate a labelled task: fine-tune, linear probe or GBDT baseline")
    add_run_flags(p)
    p.add_argument("--task", help=TASK_HELP)
    p.add_argument("--task-type", help="with --task TABLE.COLUMN: binary, multiclass or regression (default: from the "
                                       "column's values)")
    p.add_argument("--init", help="'scratch' or a pretrain run folder (default: scratch)")
    p.add_argument("--mode", help="finetune (everything trains), probe (linear head on "
                                                      "frozen embeddings), gbdt (trees on raw features) or "
                                                      "gbdt-graph (trees on raw plus causal graph features: "
                                                      "windowed degrees and amounts, fan-in/out, cycles, "
                                                      "scatter-gather) or reference (the trivial reference: "
                                                      "the training labels' mean, majority class or positive "
                                                      "rate for every row) (default: finetune)")
    p.add_argument("--label-fraction", type=float, help="seeded share of the training labels used (default: 1)")
    add_trees_flag(p)
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="what an event's neighbourhood may hold: causal (events at or before its time) or "
                        "transductive (its split's whole graph, as Multi-GNN evaluates; same as --no-time-aware) "
                        "(default: the --init run's, else causal)")
    p.add_argument("--out", required=True, help="run folder")
    add_resume_flag(p)
    p.set_defaults(func=cmd_finetune)


def add_embed_parser(sub) -> None:
    p = sub.add_parser("embed", help="export a pre-trained backbone's node and event embeddings to Parquet")
    p.add_argument("--run", required=True, help="pretrain run folder")
    p.add_argument("--data", help="the run's data (default: from its config.yaml), or a new file of its format "
                                  "whose rows are encoded with the run's saved preprocessing")
    p.add_argument("--out", required=True, help="output .parquet file")
    p.add_argument("--table", help="a database's table whose rows to embed, one of the run's --tables "
                                   "(default: the run's table)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_new_rows_bad_values_flag(p)
    p.set_defaults(func=cmd_embed)


def cmd_predict(args: argparse.Namespace) -> None:
    from relssl.predict import predict

    table = predict(args.run, args.data, args.out, args.device, args.on_bad_values)
    print(f"wrote {args.out}: {len(table):,} predictions ({table['kind'].iloc[0] if len(table) else 'none'})")


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="a fine-tuned run's predictions for the rows of a new file, to Parquet")
    p.add_argument("--run", required=True, help="finetune run folder (mode finetune or probe)")
    p.add_argument("--data", required=True, help="a file (or schema) of the run's format whose rows to predict, "
                                                 "encoded with the run's saved preprocessing")
    p.add_argument("--out", required=True, help="output .parquet file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_new_rows_bad_values_flag(p)
    p.set_defaults(func=cmd_predict)


def add_new_rows_bad_values_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-bad-values", help="a bad number in the new rows (text, inf): error, or missing (an empty "
                                          "cell); drop reads it as missing too, since every new row is kept "
                                          "(default: the run's policy)")


def add_downstream_experiment_parser(exp_sub) -> None:
    p = exp_sub.add_parser("downstream", help="GBDT (raw, graph), scratch, pretrained probe and fine-tune × label "
                                              "fractions (report.md, metric_vs_fraction.png)")
    add_run_flags(p)
    p.add_argument("--task", help=TASK_HELP)
    p.add_argument("--pretrain-objectives", help="objectives pre-trained together (default: mcm)")
    p.add_argument("--recipes", help="several pre-training recipes compared on the same downstream runs, "
                                     "';'-separated OBJECTIVES[:COMBINER[:WEIGHTS]], e.g. 'mcm; mcm,lp:weighted:1,0.1; "
                                     "mcm,lp:moco' (instead of --pretrain-objectives, --combiner, --weights)")
    p.add_argument("--label-fractions", default="0.01,0.1,1", help="comma-separated shares of the training labels")
    p.add_argument("--finetune-epochs", type=int, default=10, help="downstream epochs (--epochs is pre-training's)")
    add_trees_flag(p)
    p.add_argument("--protocols", default="causal",
                   help="comma-separated evaluation protocols of the backbone methods: causal, transductive")
    add_grid_flags(p)
    p.add_argument("--out", required=True, help="experiment folder")
    p.set_defaults(func=cmd_experiment_downstream)
