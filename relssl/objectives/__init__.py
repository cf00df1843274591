"""Pretext tasks behind one interface; adding one is a module plus a registry line."""
from __future__ import annotations

import warnings

from relssl.data.prepare import PreparedData
from relssl.data.relational import parse_mask_groups
from relssl.data.splits import TRAIN
from relssl.errors import RelsslError
from relssl.masking import twin_columns
from relssl.objectives.am import AttributeMasking
from relssl.objectives.base import BuildContext, Objective, TaskOutput
from relssl.objectives.ctr import Contrastive
from relssl.objectives.dae import DenoisingAutoencoder
from relssl.objectives.feat2vec import Feat2VecObjective
from relssl.objectives.lp import LinkPrediction
from relssl.objectives.mcm import MaskedCellModelling
from relssl.objectives.mv import MaskVectorEstimation

OBJECTIVES = {cls.name: cls for cls in (MaskedCellModelling, AttributeMasking, MaskVectorEstimation,
                                        LinkPrediction, Contrastive, DenoisingAutoencoder, Feat2VecObjective)}
# Every task's options (flag --<name>, objective_options key) with their defaults, defined on the task.
OPTIONS = {name: default for cls in OBJECTIVES.values() for name, (default, _) in cls.OPTIONS.items()}


def metric_index(metric: str) -> int:
    """Where the metric's own name sits in ``TASK/METRIC[/COLUMN]``, or in
    ``TABLE/TASK/METRIC[/COLUMN]`` (a database's run with several pretext tables)."""
    parts = metric.split("/")
    task = 1 if len(parts) > 2 and parts[0] not in OBJECTIVES and parts[1] in OBJECTIVES else 0
    return min(task + 1, len(parts) - 1)


def reference_key(metric: str) -> str:
    """The key of a self-supervised metric's trivial reference: ``mcm/acc`` -> ``mcm/acc_ref``,
    ``mcm/rmse/Amount`` -> ``mcm/rmse_ref/Amount``, ``lp/hits@1`` -> ``lp/hits@1_ref``,
    ``surveys/mcm/acc`` -> ``surveys/mcm/acc_ref``."""
    parts = metric.split("/")
    parts[metric_index(metric)] += "_ref"
    return "/".join(parts)


def parse_objectives(text: str | list[str]) -> list[str]:
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise RelsslError(f"--objectives '{text}': unknown objective(s) {unknown}; "
                          f"expected a comma-separated subset of {', '.join(OBJECTIVES)}")
    return list(dict.fromkeys(names))


def resolve_mask_groups(spec: str | None, prep: PreparedData) -> list[list[int]]:
    """Column positions of each mask group. ``spec`` None: the data's declared groups (schema
    ``mask_groups``) plus every pair of columns equal in more than 95 % of training rows; 'none': no
    groups; else 'A+B;C+D'. Twins left in different groups get a warning naming them."""
    names = [c.name for c in prep.events.columns]
    twins = twin_columns(prep.events, prep.rows(TRAIN))
    if spec is None:
        groups: list[set[str]] = []
        for group in [*prep.mask_groups, *([a, b] for a, b, _ in twins)]:  # merge groups sharing a column
            overlapping = [g for g in groups if g & set(group)]
            groups = [g for g in groups if not g & set(group)] + [set(group).union(*overlapping)]
        groups = [sorted(g, key=names.index) for g in groups]
    elif spec.strip().lower() == "none":
        groups = []
    else:
        groups = parse_mask_groups(spec, names, "--mask-groups")
    for a, b, share in twins:
        if not any({a, b} <= set(g) for g in groups):
            warnings.warn(f"columns '{a}' and '{b}' are equal in {share:.1%} of training rows: a masked cell "
                          f"can be copied from its twin; mask them together with --mask-groups '{a}+{b}'")
    return [[names.index(c) for c in g] for g in groups]


def check_mask_exclude(names: list[str], views: list[PreparedData]) -> None:
    """Each ``--mask-exclude`` name is a column some pretext table's masking tasks could hide."""
    maskable = list(dict.fromkeys(c.name for view in views for c in view.events.columns if c.maskable))
    unknown = [n for n in names if n not in maskable]
    if unknown:
        raise RelsslError(f"--mask-exclude {','.join(names)}: {', '.join(map(repr, unknown))} is not a maskable "
                          f"column; expected some of {', '.join(maskable)}")


def excluded_columns(names: list[str], prep: PreparedData, groups: list[list[int]]) -> list[int]:
    """Positions of this table's columns among ``names``. A mask group is excluded whole or not
    at all: its other columns masked beside a visible one would be copied from it."""
    columns = [c.name for c in prep.events.columns]
    for group in groups:
        kept = [columns[p] for p in group if columns[p] not in names]
        if len(kept) < len(group) and kept:
            shown = ", ".join(columns[p] for p in group if columns[p] in names)
            raise RelsslError(f"--mask-exclude {','.join(names)}: {shown} shares a mask group with {', '.join(kept)}, "
                              f"which would be masked while {shown} stays visible (a copy task); exclude the whole "
                              f"group, or set the groups with --mask-groups")
    return [pos for pos, name in enumerate(columns) if name in names]


def build_objectives(names: list[str], prep: PreparedData, channels: int, mask_type: str,
                     cells_per_row: int = 1, mask_prob: float | None = None,
                     options: dict | None = None, mask_groups: str | None = None,
                     mask_exclude: list[str] = ()) -> list[Objective]:
    """Each task from its ``build``: MCM, AM and MV share one masker (the run's --mask), hence one
    set of masks per batch; CTR and DAE corrupt with their own replace-type maskers. Every masker
    keeps mask groups together and leaves the ``mask_exclude`` columns alone."""
    unknown = set(options or {}) - set(OPTIONS)
    if unknown:
        raise RelsslError(f"objective_options: unknown {sorted(unknown)}; expected some of {sorted(OPTIONS)}")
    opt = {**OPTIONS, **(options or {})}
    for name in names:
        if OBJECTIVES[name].needs_graph and not prep.has_context:
            raise RelsslError(f"--objectives {name} needs a graph (events with source and target keys, or "
                              f"tables linked by keys)")
    masking = any(OBJECTIVES[name].masks_cells for name in names)
    groups = resolve_mask_groups(mask_groups, prep) if masking else []
    exclude = excluded_columns(mask_exclude, prep, groups) if masking else []
    ctx = BuildContext(prep, channels, opt, groups, mask_type, cells_per_row, mask_prob, exclude)
    return [OBJECTIVES[name].build(ctx) for name in names]


__all__ = ["OBJECTIVES", "OPTIONS", "Objective", "TaskOutput", "build_objectives", "check_mask_exclude", "metric_index",
           "parse_objectives", "reference_key"]
