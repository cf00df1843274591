"""Run flags shared by every training command, derived from the config dataclasses and the
registries (nothing here repeats a default), parsed into a config (a --config YAML first, flags
over it); and the printed metrics table."""
from __future__ import annotations

import argparse
import inspect
import types
import typing
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path


from relssl.errors import RelsslError
from relssl.files import read_yaml
from relssl.multitask import COMBINERS
from relssl.nn.backbone import ModelConfig
from relssl.objectives import OBJECTIVES, metric_index, parse_objectives, reference_key
from relssl.train.pretrain import PretrainConfig
from relssl.train.run_folder import RESUMABLE, RunFolder

def _flag_type(hint) -> type:
    """The argparse type of a config field: its own for int, float, str and bool; lists are given
    as comma-separated text (parsed by config_from_args)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _flag_type(args[0])
    return hint if hint in (int, float, str, bool) else str


def config_flags(cls) -> dict[str, tuple[type, object, str]]:
    """Field name -> (flag type, default, help) of a config dataclass, nested configs and option
    dictionaries left out."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if is_dataclass(hints[f.name]) or hints[f.name] is dict:  # flagged apart (MODEL_FLAGS, ...)
            continue
        default = f.default_factory() if f.default is MISSING else f.default
        out[f.name] = (_flag_type(hints[f.name]), default, f.metadata.get("help", ""))
    return out


# Every flag of a training command comes from one definition: PretrainConfig / ModelConfig fields,
# the objectives' OPTIONS (flag --<option>) and the combiners' keyword options (flag
# --<combiner>-<option>, default read from the signature).
RUN_FLAGS = config_flags(PretrainConfig)
MODEL_FLAGS = config_flags(ModelConfig)
COMBINER_FLAGS = {f"{name}_{param.name}": (name, param.name, param.default, cls.OPTION_HELP.get(param.name, ""))
                  for name, cls in COMBINERS.items()
                  for param in inspect.signature(cls.__init__).parameters.values()
                  if param.default is not inspect.Parameter.empty}
OBJECTIVE_FLAGS = {name: (task, str if default is None else type(default), default, help_text)
                   for task, cls in OBJECTIVES.items() for name, (default, help_text) in cls.OPTIONS.items()}


def flag_help(text: str, default) -> str:
    """The help text with the default appended (lists as the comma-separated text a flag takes)."""
    if default in (None, "", [], {}) or isinstance(default, bool):
        return text
    return f"{text} (default: {','.join(map(str, default)) if isinstance(default, list) else default})"


def number_list(text: str, flag: str, kind=int) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RelsslError(f"{flag} '{text}': expected comma-separated {kind.__name__}s like "
                          f"{'8,4' if kind is int else '1,0.5'}") from None


def add_config_flags(p: argparse.ArgumentParser, flags: dict, both_forms: bool = False) -> None:
    """One flag per config field (``config_flags``); a bool is a switch away from its default
    (--no-time-aware, --skip-bad-rows), or with ``both_forms`` --x and --no-x. Not given is None,
    so a --config's value stands."""
    for name, (typ, default, text) in flags.items():
        flag = "--" + name.replace("_", "-")
        if typ is bool and both_forms:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typ is bool:
            p.add_argument(f"--no-{name.replace('_', '-')}" if default else flag, action="store_true",
                           dest=name, default=None, help=text)
        else:
            p.add_argument(flag, type=typ, default=None, help=flag_help(text, default))


def flag_values(args: argparse.Namespace, flags: dict) -> dict:
    """The config fields given as flags (a switch flips its default)."""
    return {name: (not default) if typ is bool else getattr(args, name)
            for name, (typ, default, _) in flags.items() if getattr(args, name, None) is not None}


def add_grid_flags(p: argparse.ArgumentParser, seeds: int = 3, jobs: bool = True) -> None:
    """An experiment's --seeds (and --jobs: its runs trained in parallel processes)."""
    p.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0..N-1)")
    if jobs:
        p.add_argument("--jobs", type=int, default=1,
                       help="runs trained at once, each in a process of its own with 1/N of the torch threads "
                            "(N at most the cores); a run's results depend on its thread count, not on N "
                            "(default: 1)")


def grid_seeds(args: argparse.Namespace) -> list[int]:
    """--seeds N as the seeds 0..N-1 (and --jobs checked)."""
    if args.seeds < 1:
        raise RelsslError(f"--seeds {args.seeds}: expected a positive number of seeds")
    if getattr(args, "jobs", 1) < 1:
        raise RelsslError(f"--jobs {args.jobs}: expected a positive number of processes")
    return list(range(args.seeds))


def add_resume_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint with its own config.yaml "
                        "(--epochs may raise its epoch limit)")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (e.g. a run folder's config.yaml); flags override it")
    add_config_flags(p, RUN_FLAGS)
    add_config_flags(p, MODEL_FLAGS, both_forms=True)  # --ports and --no-ports: a --config may say either
    for name, (_, _, default, text) in COMBINER_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=float, default=None, help=flag_help(text, default))
    for name, (_, typ, default, text) in OBJECTIVE_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=flag_help(text, default))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def read_config(path: str | None) -> dict:
    """The options of a --config YAML (none without one), or one clear error naming the file."""
    if not path:
        return {}
    raw = read_yaml(Path(path), f"--config {path}") or {}
    if not isinstance(raw, dict):
        raise RelsslError(f"--config {path}: expected a mapping of option names to values")
    return raw


def run_flag_values(args: argparse.Namespace, prefix: str = "") -> dict:
    """The pre-training flags given on the command line, as dotted config keys (``model.channels``)."""
    given = {**flag_values(args, RUN_FLAGS), **{f"model.{k}": v for k, v in flag_values(args, MODEL_FLAGS).items()}}
    return {f"{prefix}{k}": v for k, v in given.items()}


def option_differences(args: argparse.Namespace, run: dict) -> list[str]:
    """The objective and combiner option flags given (--lp-negatives, --moco-beta) that differ from
    ``run``, a pre-training config as saved: an option it does not list had its default. Apart from
    ``given``'s dotted keys: an option is kept under its owner's name and only applies with it."""
    combiner, objectives = run.get("combiner", "sum"), parse_objectives(run.get("objectives", "mcm"))
    saved_combiner, saved_objective = run.get("combiner_options") or {}, run.get("objective_options") or {}
    options = [(name, owner == combiner, f"the run's combiner is {combiner}", saved_combiner.get(option, default))
               for name, (owner, option, default, _) in COMBINER_FLAGS.items()]
    options += [(name, objective in objectives, f"the run has no {objective}", saved_objective.get(name, default))
                for name, (objective, _, default, _) in OBJECTIVE_FLAGS.items()]
    differ = []
    for name, applies, otherwise, old in options:
        value = getattr(args, name, None)
        if value is not None and (not applies or old != value):
            differ.append(f"--{name.replace('_', '-')} {value} ({otherwise if not applies else f'the run has {old}'})")
    return differ


def check_resume_flags(args: argparse.Namespace, run_dir: Path, given: dict | None = None,
                       config_class: type = PretrainConfig, options_at: str | None = None) -> dict:
    """``--resume`` continues with the run's own settings: a flag that would change one is refused
    with one line naming each difference (silently ignoring it trained with the old value). Returns
    the flags it may change (RESUMABLE: more epochs, another device, ...), as dotted config keys,
    for the training function's ``changes``.
    ``given``: dotted config key -> flag value (default: the pre-training flags); a setting the run
    predates counts as its default in ``config_class``, as experiments' reuse check reads it.
    ``options_at``: where the run's config holds the pre-training config whose objective and
    combiner option flags the command takes ("": it is the whole config; None: no such flags)."""
    given = run_flag_values(args) if given is None else given
    changes = {name: value for name, value in given.items()
               if name.rsplit(".", 1)[-1] in RESUMABLE and value is not None}
    if not (run_dir / "config.yaml").exists():
        return changes  # RunFolder.check says what is missing
    saved = RunFolder(run_dir, writer=False).config()
    defaults = asdict(config_class())
    if getattr(args, "config", None):
        raise RelsslError("--resume continues with the run's own config.yaml; drop --config")
    run = saved if options_at == "" else saved.get(options_at) or {}
    differ = [] if options_at is None else option_differences(args, run)
    for name, value in given.items():
        key = name.rsplit(".", 1)[-1]
        if key in RESUMABLE or value is None:
            continue
        old, default = saved, defaults
        for part in name.split("."):
            old = old.get(part, MISSING) if isinstance(old, dict) else None
            default = default.get(part) if isinstance(default, dict) else None
        old = default if old is MISSING else old
        if key == "fanouts":
            value = number_list(value, "--fanouts")
        elif key == "objectives":
            value = parse_objectives(value)
        if str(old) != str(value):
            differ.append(f"--{key.replace('_', '-')} {value} (the run has {old})")
    if differ:
        raise RelsslError(f"--resume {run_dir}: the run was trained with other settings: {'; '.join(differ)}; "
                          f"resume without them, or start a new run")
    return changes


def config_from_args(args: argparse.Namespace, raw: dict | None = None, **overrides) -> PretrainConfig:
    """The run's settings: ``raw`` (default: the --config file's), then ``overrides``, then the flags."""
    raw = dict(read_config(args.config) if raw is None else raw)
    raw.update(overrides)
    raw.update(flag_values(args, RUN_FLAGS))
    if isinstance(raw.get("weights"), str):
        raw["weights"] = number_list(raw["weights"], "--weights", float)
    options = dict(raw.get("combiner_options") or {})
    for name, (combiner, option, _, _) in COMBINER_FLAGS.items():
        if getattr(args, name, None) is not None:
            if raw.get("combiner", "sum") != combiner:
                raise RelsslError(f"--{name.replace('_', '-')} needs --combiner {combiner}")
            options[option] = getattr(args, name)
    raw["combiner_options"] = options
    objective_options = dict(raw.get("objective_options") or {})
    for name, (objective, _, _, _) in OBJECTIVE_FLAGS.items():
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
    cfg = PretrainConfig.from_dict(raw)
    cfg.validate()
    return cfg


def print_metrics(metrics: dict[str, float], title: str) -> None:
    """Each metric beside its trivial reference where it has one; a metric's per-column values
    (<objective>/<metric>/<column> beside <objective>/<metric>) are left to the run's final.json."""
    def per_column(key: str) -> bool:
        return key.count("/") > metric_index(key) and key.rsplit("/", 1)[0] in metrics

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
