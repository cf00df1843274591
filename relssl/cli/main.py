"""The relssl parser and its first commands: generate, pretrain, demo, experiment masks/combos."""
from __future__ import annotations

import argparse
import functools
import shutil
import sys
import warnings
from pathlib import Path

from relssl.cli.bench import add_bench_parser, add_bench_tasks_parser
from relssl.cli.downstream import (add_downstream_experiment_parser, add_embed_parser, add_finetune_parser,
                                   add_predict_parser)
from relssl.cli.feat2vec import add_feat2vec_parsers
from relssl.cli.flags import (add_grid_flags, add_resume_flag, add_run_flags, check_resume_flags, config_from_args,
                              grid_seeds, print_metrics)
from relssl.cli.recsys import add_recsys_experiment_parser, add_recsys_parsers
from relssl.cli.schema import add_schema_parser
from relssl.errors import RelsslError, out_of_disk, out_of_memory
from relssl.logs import configure_cli, restore
from relssl.version import __version__

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
    changes = check_resume_flags(args, Path(args.out), options_at="") if args.resume else None
    cfg = None if args.resume else config_from_args(args)
    final = pretrain(cfg, args.out, resume=args.resume, progress=not args.no_progress, changes=changes)
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

    seeds = grid_seeds(args)
    overrides = {}
    if args.objectives is None:
        graph = load_dataset(args.data or "synthetic-aml", args.skip_bad_rows, args.on_orphans,
                             args.on_bad_values or "error").has_graph
        overrides["objectives"] = ["mcm", "am", "mv"] if graph else ["mcm", "mv"]
    cfg = config_from_args(args, **overrides)
    path = run_mask_experiment(cfg, seeds, Path(args.out), ["relssl", *args.argv], progress=not args.no_progress,
                               jobs=args.jobs)
    print(path.read_text())


def cmd_experiment_combos(args: argparse.Namespace) -> None:
    from relssl.experiments.combos import TASKS, run_combo_experiment
    from relssl.multitask import COMBINERS

    combiners = [c.strip() for c in args.combiners.split(",") if c.strip()]
    known = [c for c in COMBINERS if c != "weighted"] + ["tuned"]
    if not combiners or any(c not in known for c in combiners):
        raise RelsslError(f"--combiners '{args.combiners}': expected a comma-separated subset of {', '.join(known)} "
                          f"(tuned: a static weighted sum with its weight chosen on validation)")
    seeds = grid_seeds(args)
    cfg = config_from_args(args)
    # --objectives names the pool whose subsets with MCM are compared (default: all four)
    tasks = tuple(cfg.objectives) if args.objectives else TASKS
    if "mcm" not in tasks or len(tasks) < 2:
        raise RelsslError(f"--objectives {args.objectives}: combos compares subsets with MCM; "
                          f"expected mcm and at least one other task")
    path = run_combo_experiment(cfg, combiners, seeds, Path(args.out), ["relssl", *args.argv],
                                tasks=tasks, progress=not args.no_progress, jobs=args.jobs)
    print(path.read_text())


def torch_version() -> str:
    """torch's version from its package metadata: importing torch costs a second."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "not installed"


class OneLineParser(argparse.ArgumentParser):
    """A badly typed or unknown flag reads as every other bad input: one line naming the option and
    the (sub)command, exit 2 (argparse's own error prints the whole usage, dozens of lines, before
    it). Subcommands' parsers are of this class too (argparse builds them with their parent's
    class), so each takes ``--debug`` as well: it works before or after the subcommand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser sets it only when given, never over the top parser's
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (options: {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """argparse hands a subcommand's unknown flags up to the top parser, whose error would name
        ``relssl``: the innermost parser that left some is noted for parse_args to name."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(namespace, "_refused_by"):
            namespace._refused_by = self.prog
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        prog = vars(namespace).pop("_refused_by", self.prog)
        if extras:
            self.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extras)} (options: {prog} --help)\n")
        return namespace


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """relssl's parser. Built once a process: it has hundreds of options (30 ms), and parsing leaves
    it as it was."""
    parser = OneLineParser(
        prog="relssl", description="Self-supervised representation learning on relational multimodal data.")
    parser.set_defaults(debug=False)  # --debug: OneLineParser's, on every parser
    parser.add_argument("-q", "--quiet", action="store_true", help="progress messages off: results and warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    parser.add_argument("--version", action="version", version=f"relssl {__version__} (torch {torch_version()})",
                        help="print relssl's and torch's versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic data")
    gen_sub = gen.add_subparsers(dest="kind", required=True)
    aml = gen_sub.add_parser("aml", help="IBM AMLworld-format transactions with laundering patterns")
    aml.add_argument("--preset", default="default",
                     help="default (the bundled synthetic-aml), hi-small or li-small: IBM's files' headline statistics")
    aml.add_argument("--rows", help="override the preset's number of transactions")
    aml.add_argument("--seed", default="0", help="fixes every draw of the generator (default: 0)")
    aml.add_argument("--laundering-rate", help="override the preset's share of laundering rows, e.g. 0.001")
    aml.add_argument("--name", default="Synthetic", help="file prefix: <name>_Trans.csv, <name>_Patterns.txt")
    aml.add_argument("--out", required=True, help="folder for <name>_Trans.csv and <name>_Patterns.txt")
    aml.set_defaults(func=cmd_generate)

    pre = sub.add_parser("pretrain", help="self-supervised pre-training into a run folder")
    add_run_flags(pre)
    pre.add_argument("--out", help="run folder")
    add_resume_flag(pre)
    pre.set_defaults(func=cmd_pretrain)

    demo = sub.add_parser("demo", help="a short MCM pre-training on the bundled synthetic AML data")
    add_run_flags(demo)
    demo.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    demo.set_defaults(func=cmd_demo)

    exp = sub.add_parser("experiment", help="multi-seed comparison tables and plots")
    exp_sub = exp.add_subparsers(dest="experiment", required=True)
    masks = exp_sub.add_parser("masks", help="MCM/AM/MV metrics under each mask type (report.md, curves.png)")
    add_run_flags(masks)
    add_grid_flags(masks)
    masks.add_argument("--out", required=True, help="experiment folder")
    masks.set_defaults(func=cmd_experiment_masks)
    combos = exp_sub.add_parser("combos", help="every objective subset with MCM × combiners (report.md, curves.png); "
                                                "--objectives narrows the pool (default mcm,mv,am,lp)")
    add_run_flags(combos)
    combos.add_argument("--combiners", default="sum,moco",
                        help="comma-separated combiners to compare: sum, uw, moco, pcgrad, cagrad, and tuned "
                             "(a static weighted sum, the other tasks' weight chosen on validation)")
    add_grid_flags(combos)
    combos.add_argument("--out", required=True, help="experiment folder")
    combos.set_defaults(func=cmd_experiment_combos)

    add_schema_parser(sub)
    add_bench_parser(sub)
    add_bench_tasks_parser(sub)
    # Multimodal recommendation: relssl recsys train, relssl experiment recsys.
    add_recsys_parsers(sub)
    add_recsys_experiment_parser(exp_sub)
    # Downstream evaluation: relssl finetune, relssl embed, relssl experiment downstream.
    add_finetune_parser(sub)
    add_embed_parser(sub)
    add_predict_parser(sub)
    add_downstream_experiment_parser(exp_sub)
    # Feat2Vec: relssl feat2vec, relssl experiment feat2vec.
    add_feat2vec_parsers(sub, exp_sub)
    return parser


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0][:160] if text else "") or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # reports name the exact command that regenerates them
    # A library warning (a skipped line, twin columns) reads as one line, not as source code.
    warnings.formatwarning = lambda message, *_, **__: f"relssl: warning: {message}\n"
    logging_state = configure_cli(args.quiet, args.verbose)
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
    except Exception as err:
        if args.debug or not (out_of_disk(err) or out_of_memory(err)):
            raise
        if out_of_disk(err):
            where = getattr(err, "filename", None) or "a file"
            print(f"relssl: error: no space left on the disk writing {where}; every file written before it is intact "
                  f"(a run keeps its last finished epoch: --resume continues it; a cache entry being built was "
                  f"removed)", file=sys.stderr)
            return 2
        print(f"relssl: error: out of memory ({first_line(err)}); a run keeps its last finished epoch (--resume "
              f"continues it); try a smaller --batch-size or --eval-rows, or the cache (IBM AML files are read "
              f"out of core)", file=sys.stderr)
        return 2
    finally:
        restore(logging_state)
    return 0
