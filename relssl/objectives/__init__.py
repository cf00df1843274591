"""Pretext tasks behind one interface; adding one is a module plus a registry line."""
from __future__ import annotations

import warnings

from relssl.data.prepare import PreparedData
from relssl.data.relational import parse_mask_groups
from relssl.data.splits import TRAIN
from relssl.errors import RelsslError
from relssl.feat2vec import Feat2Vec, parse_groups
from relssl.masking import Masker, twin_columns
from relssl.objectives.am import AttributeMasking
from relssl.objectives.base import Objective, TaskOutput
from relssl.objectives.ctr import Contrastive
from relssl.objectives.dae import DenoisingAutoencoder
from relssl.objectives.feat2vec import Feat2VecObjective
from relssl.objectives.lp import LinkPrediction, pair_keys
from relssl.objectives.mcm import MaskedCellModelling
from relssl.objectives.mv import MaskVectorEstimation

OBJECTIVES = {cls.name: cls for cls in (MaskedCellModelling, AttributeMasking, MaskVectorEstimation,
                                        LinkPrediction, Contrastive, DenoisingAutoencoder, Feat2VecObjective)}
# Objective hyper-parameters (PretrainConfig.objective_options, flag --<name>): default and help,
# defined here only. Feat2Vec's groups take relssl.feat2vec.parse_groups's forms (None: one group
# per column and entity id); a target group switches it to supervised mode (only that group is
# corrupted, and ranked).
OPTION_SPECS = {
    "lp_negatives": (8, "LP: negatives per seed edge, even: each of K/2 candidate entities replaces the source "
                        "once and the target once (K/2 + 2 trees per seed)"),
    "ctr_prob": (0.6, "CTR: probability that a cell of a view is corrupted"),
    "ctr_temperature": (0.1, "CTR: InfoNCE temperature"),
    "dae_prob": (0.15, "DAE: probability that a cell is swap-noised"),
    "feat2vec_negatives": (5, "Feat2Vec: noise rows per real row"),
    "feat2vec_alpha1": (0.25, "Feat2Vec: a group is corrupted with probability ∝ its parameter count^alpha1"),
    "feat2vec_alpha2": (0.75, "Feat2Vec: a noise value is drawn ∝ its frequency^alpha2"),
    "feat2vec_groups": (None, "Feat2Vec: feature groups, e.g. 'Amount Paid+Amount Received;@source' "
                              "(default: one per column and entity id)"),
    "feat2vec_target": (None, "Feat2Vec: supervised mode, corrupt and rank only this group"),
}
OPTIONS = {name: default for name, (default, _) in OPTION_SPECS.items()}


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


def build_objectives(names: list[str], prep: PreparedData, channels: int, mask_type: str,
                     cells_per_row: int = 1, mask_prob: float | None = None,
                     options: dict | None = None, mask_groups: str | None = None) -> list[Objective]:
    """MCM, AM and MV share one masker (the run's --mask), hence one set of masks per batch; CTR and
    DAE corrupt with their own replace-type maskers. Every masker keeps mask groups together."""
    unknown = set(options or {}) - set(OPTIONS)
    if unknown:
        raise RelsslError(f"objective_options: unknown {sorted(unknown)}; expected some of {sorted(OPTIONS)}")
    opt = {**OPTIONS, **(options or {})}
    for key in ("ctr_prob", "dae_prob"):
        if not 0 < opt[key] <= 1:
            raise RelsslError(f"objective_options: {key} {opt[key]}: expected a probability in (0, 1]")
    for name in names:
        if OBJECTIVES[name].needs_graph and not prep.has_graph:
            raise RelsslError(f"--objectives {name} needs a graph (events with source and target keys)")
    train = prep.rows(TRAIN)
    groups = resolve_mask_groups(mask_groups, prep) if {"mcm", "am", "mv", "ctr", "dae"} & set(names) else []
    masker = None
    if {"mcm", "am", "mv"} & set(names):
        masker = Masker(prep.events, train, mask_type, cells_per_row, mask_prob, groups)
    build = {
        "mcm": lambda: MaskedCellModelling(masker, channels),
        "am": lambda: AttributeMasking(masker, channels),
        "mv": lambda: MaskVectorEstimation(masker, channels),
        "lp": lambda: LinkPrediction(pair_keys(prep), prep.num_entities, channels, opt["lp_negatives"]),
        "ctr": lambda: Contrastive(Masker(prep.events, train, "replace", prob=opt["ctr_prob"], groups=groups),
                                   channels, opt["ctr_temperature"]),
        "dae": lambda: DenoisingAutoencoder(
            Masker(prep.events, train, "replace", prob=opt["dae_prob"], groups=groups), channels),
        "feat2vec": lambda: Feat2VecObjective(Feat2Vec(
            prep, parse_groups(opt["feat2vec_groups"], prep, "objective_options: feat2vec_groups"), channels,
            opt["feat2vec_negatives"], opt["feat2vec_alpha1"], opt["feat2vec_alpha2"], opt["feat2vec_target"],
            "objective_options: feat2vec_target")),
    }
    return [build[name]() for name in names]


__all__ = ["OBJECTIVES", "OPTIONS", "Objective", "TaskOutput", "build_objectives", "parse_objectives"]
