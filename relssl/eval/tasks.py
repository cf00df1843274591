"""Downstream tasks: which label column, on which rows (events or entities), and the labelled
train/validation/test sets, with a seeded subsample of the training labels.

A task is written ``KIND:COLUMN``: ``edge:Is Laundering`` (binary label of an event),
``node:isFraud`` (binary label of an entity), ``edge-multiclass:sex`` / ``node-multiclass:...``
(one of several classes), ``edge-regression:rating`` / ``node-regression:...`` (a numerical
label). On a database, ``TABLE.COLUMN`` names a label column of a table, and a bare name one of
its entity tasks at cut-off times (relssl.data.entity_tasks). Without ``--task`` the first
declared label column is used (event labels before entity labels): with more than two distinct
values, a regression task when they are numbers, else a multiclass one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from relssl.data.entity_tasks import TaskRows
from relssl.data.prepare import PreparedData
from relssl.data.relational import RelationalData
from relssl.data.splits import TEST, TRAIN, VAL
from relssl.errors import RelsslError

KINDS = {f"{target}{suffix}": (target, kind) for target in ("edge", "node")
         for suffix, kind in (("", "binary"), ("-multiclass", "multiclass"), ("-regression", "regression"))}
# Boolean entity label columns that, when both present, give a node split (as in T-EDGE).
GIVEN_SPLIT = ("is_train", "is_test")


@dataclass(frozen=True)
class TaskSpec:
    # "edge": rows are events (or a database's seed-table rows); "node": rows are entities;
    # "entity": a database's entity task at cut-off times (relssl.data.entity_tasks), ``column`` its name
    target: str
    column: str
    kind: str = "binary"  # binary, multiclass or regression (relssl.metrics.classification.KINDS)

    @property
    def regression(self) -> bool:
        return self.kind == "regression"

    @property
    def name(self) -> str:
        if self.target == "entity":
            return self.column
        return f"{self.target}{'' if self.kind == 'binary' else '-' + self.kind}:{self.column}"


def table_task(text: str | None) -> tuple[str, str] | None:
    """(table, column) of a ``TABLE.COLUMN`` task (a database's), None for ``KIND:COLUMN``."""
    if text is None or ":" in text or "." not in text:
        return None
    table, _, column = text.partition(".")
    if not table or not column:
        raise RelsslError(f"--task '{text}': expected TABLE.COLUMN or KIND:COLUMN")
    return table, column


def parse_task(text: str | None, data: RelationalData, task_type: str | None = None,
               entity_tasks: dict | None = None) -> TaskSpec:
    """``--task`` text (or the dataset's default) -> a checked TaskSpec. ``TABLE.COLUMN`` (the run's
    ``--table`` is TABLE) names a label column of a database's table, its kind ``task_type`` or
    inferred from the values as for the default task; a bare name, one of a database's
    ``entity_tasks`` (relssl.data.entity_tasks)."""
    if task_type is not None and task_type not in ("binary", "multiclass", "regression"):
        raise RelsslError(f"--task-type {task_type}: expected binary, multiclass or regression")
    if text in (entity_tasks or {}):
        if task_type is not None:
            raise RelsslError(f"--task-type: entity task '{text}' has its kind from its label "
                              f"({entity_tasks[text].label})")
        return TaskSpec("entity", text, entity_tasks[text].kind)
    named = table_task(text)
    if named is not None:
        if named[1] not in data.label_cols:
            raise RelsslError(f"--task '{text}': '{named[1]}' is not a label column of table '{named[0]}' "
                              f"(its label columns: {data.label_cols or 'none'})")
        spec = infer_kind("edge", named[1], data.events)
        return TaskSpec("edge", named[1], task_type or spec.kind)
    if task_type is not None:
        raise RelsslError("--task-type goes with a --task TABLE.COLUMN (KIND:COLUMN names its kind)")
    if text is None:
        return default_task(data)
    kind, sep, column = text.partition(":")
    if not sep or kind not in KINDS or not column:
        defined = f"; the database's entity tasks: {', '.join(entity_tasks)}" if entity_tasks else ""
        raise RelsslError(f"--task '{text}': expected KIND:COLUMN with KIND one of {', '.join(KINDS)} "
                          f"(e.g. edge:Is Laundering, node:isFraud), or TABLE.COLUMN on a database{defined}")
    target, kind = KINDS[kind]
    labels = data.label_cols if target == "edge" else data.entity_label_cols
    if column not in labels:
        table = "event" if target == "edge" else "entity"
        raise RelsslError(f"--task '{text}': '{column}' is not an {table} label column of '{data.name}' "
                          f"(its {table} label columns: {labels or 'none'})")
    if target == "node" and not data.has_graph:
        raise RelsslError(f"--task '{text}': node tasks need events that link entities")
    return TaskSpec(target, column, kind)


MAX_CLASSES = 100  # a multiclass label with more distinct values is likely a number or an identifier


def has_label(values: pd.Series) -> np.ndarray:
    """Rows whose label is known: not missing, and not a blank string."""
    known = values.notna().to_numpy()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        known = known & ~values.astype(str).str.strip().eq("").to_numpy()
    return known


def infer_kind(target: str, column: str, table: pd.DataFrame) -> TaskSpec:
    """Binary for at most two known values, else regression for numbers, else multiclass."""
    values = table[column][has_label(table[column])]
    numbers = pd.api.types.is_numeric_dtype(values)
    return TaskSpec(target, column, "binary" if values.nunique() <= 2 else "regression" if numbers else "multiclass")


def default_task(data: RelationalData) -> TaskSpec:
    for target, labels, table in (("edge", data.label_cols, data.events),
                                  ("node", data.entity_label_cols, data.entities)):
        if labels:
            return infer_kind(target, labels[0], table)
    raise RelsslError(f"--task: dataset '{data.name}' declares no label column; add 'labels' to its schema")


@dataclass
class LabelledSets:
    """Labelled ids (event rows or entity ids) and targets per split (TRAIN, VAL, TEST).

    Binary targets are 0/1 with 1 = ``positive``: the label value 1 when the labels are 0/1, else
    the minority class of the labelled training rows. Multiclass targets are class indices into
    ``classes``. Regression targets are the numbers.
    """

    ids: dict[int, torch.Tensor]
    y: dict[int, np.ndarray]
    positive: str | None = None  # the positive class as text (binary)
    negative: str | None = None  # the other class as text (binary)
    classes: list[str] | None = None  # multiclass: class c's label as text


def take_share(groups: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing ``round(share * n_g)`` random members of each group g (at least one
    when share > 0): stratified sampling, or plain sampling with a single group."""
    chosen = np.zeros(len(groups), dtype=bool)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        k = min(len(members), max(int(round(share * len(members))), int(share > 0)))
        chosen[rng.permutation(members)[:k]] = True
    return chosen


def node_split(data: RelationalData, labelled: np.ndarray, groups: np.ndarray, fractions,
               rng: np.random.Generator) -> np.ndarray:
    """TRAIN/VAL/TEST (-1: unused) per labelled entity: the given ``is_train``/``is_test`` split,
    validation a stratified share val/(train+val) of its training part; else a stratified random
    split by ``fractions``."""
    split = np.full(len(labelled), -1, dtype=np.int8)
    if all(c in data.entity_label_cols for c in GIVEN_SPLIT):
        is_train, is_test = (data.entities[c].to_numpy(dtype=bool)[labelled] for c in GIVEN_SPLIT)
        split[is_test] = TEST
        split[is_train & ~is_test] = TRAIN
        pool, val_share = np.flatnonzero(split == TRAIN), fractions[1] / (fractions[0] + fractions[1])
    else:
        split[take_share(groups, fractions[0], rng)] = TRAIN
        pool, val_share = np.flatnonzero(split == -1), fractions[1] / max(1 - fractions[0], 1e-12)
        split[pool] = TEST
    split[pool[take_share(groups[pool], val_share, rng)]] = VAL
    return split


def labelled_sets(prep: PreparedData, spec: TaskSpec, seed: int, label_fraction: float = 1.0,
                  fractions=(0.6, 0.2, 0.2), examples: TaskRows | None = None) -> LabelledSets:
    """Splits of the labelled rows, then a seeded (stratified) ``label_fraction`` of the training part.

    Edge tasks follow the events' temporal split; node tasks use ``node_split``; an entity task's
    ``examples`` (ids index them) carry their own split, by cut-off time. Validation and test
    labels are never subsampled.
    """
    if not 0 < label_fraction <= 1:
        raise RelsslError(f"--label-fraction {label_fraction}: expected a fraction in (0, 1]")
    data = prep.data
    if spec.target == "entity":
        values = pd.Series(examples.label)
    else:
        values = (data.events if spec.target == "edge" else data.entities)[spec.column]
    labelled = np.flatnonzero(has_label(values))
    values = values.iloc[labelled]
    rng = np.random.default_rng([seed, 17])
    if spec.regression:
        y = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(y).any():
            raise RelsslError(f"--task {spec.name}: column '{spec.column}' holds non-numerical values")
        groups = np.zeros(len(y), dtype=np.int64)
    else:
        classes, groups = np.unique(values.astype(str).to_numpy(), return_inverse=True)
        if spec.kind == "binary" and len(classes) != 2:
            raise RelsslError(f"--task {spec.name}: a binary task needs exactly two classes, column "
                              f"'{spec.column}' has {len(classes)} ({list(classes[:5])}); use "
                              f"{spec.target}-multiclass, or {spec.target}-regression for numbers")
        if len(classes) < 2:
            raise RelsslError(f"--task {spec.name}: column '{spec.column}' holds a single class")
        if len(classes) > MAX_CLASSES:
            raise RelsslError(f"--task {spec.name}: column '{spec.column}' has {len(classes)} distinct values, more "
                              f"than {MAX_CLASSES} classes; use {spec.target}-regression for numbers")
    if spec.target == "entity":
        split = examples.split[labelled]
    else:
        split = prep.split[labelled] if spec.target == "edge" else node_split(data, labelled, groups, fractions, rng)
    positive = negative = None
    if spec.kind == "multiclass":
        y = groups.astype(np.float64)
    elif spec.kind == "binary":
        numbers = pd.to_numeric(pd.Series(classes), errors="coerce")
        if set(numbers) == {0, 1}:  # 0/1 labels: 1 is the positive class (laundering, fraud, phishing)
            pos = int(np.argmax(numbers.to_numpy()))
        else:  # otherwise the minority class of the training rows (the later one on a tie)
            counts = np.bincount(groups[split == TRAIN], minlength=2)
            pos = int(counts[1] <= counts[0])
        y, positive, negative = (groups == pos).astype(np.float64), str(classes[pos]), str(classes[1 - pos])
    train = np.flatnonzero(split == TRAIN)
    split[train[~take_share(groups[train], label_fraction, rng)]] = -1
    ids = {s: torch.from_numpy(labelled[split == s]) for s in (TRAIN, VAL, TEST)}
    out = {s: y[split == s] for s in (TRAIN, VAL, TEST)}
    rows = {"edge": "events", "node": "entities", "entity": "examples"}[spec.target]
    for s, name in ((TRAIN, "training"), (VAL, "validation"), (TEST, "test")):
        if len(ids[s]) == 0:
            raise RelsslError(f"--task {spec.name}: no labelled {name} {rows}")
    if not spec.regression and len(np.unique(out[TRAIN])) < 2:
        raise RelsslError(f"--task {spec.name}: the labelled training {rows} hold a single class")
    return LabelledSets(ids, out, positive, negative, [str(c) for c in classes] if spec.kind == "multiclass" else None)
