"""Entity tasks at cut-off times, as RelBench defines them (``EntityTask``: user churn, user visits).

A task names an entity table (users) and a timed table whose rows link to it by a foreign key
(ratings). At each cut-off time t, every entity row with at least one linked row at or before t
(and, for a timed entity table, whose own row is not later than t) is a labelled example: its
label is made from the linked rows in the window (t, t + window]: ``churn`` (none of them: binary)
or ``count`` (how many: regression). Its prediction sees the database only up to t (its tree is
cut there), so the label, which lies after t, never reaches it.

Cut-off times follow the run's temporal split, like RelBench's validation and test timestamps:
validation predicts at the last training time, test at the last validation time, and training
cut-offs step back from the last training time by ``every``, the first one ``window`` earlier,
so every training label is counted from training-period rows only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from relssl.data.splits import TEST, TRAIN, VAL
from relssl.data.tables import duration_seconds
from relssl.errors import RelsslError

LABELS = {"churn": "binary", "count": "regression"}  # label -> task kind
TASK_KEYS = {"entity", "events", "key", "window", "every", "label"}
MAX_CUTOFFS = 10_000  # more training cut-offs than this is a window or step given in the wrong unit


@dataclass(frozen=True)
class EntityTask:
    name: str
    entity: str  # the table whose rows are predicted
    events: str  # the timed table whose rows in the window make the label
    key: str  # the foreign key of ``events`` into ``entity``, as str(ForeignKey)
    window: int  # seconds: the label counts rows in (t, t + window]
    every: int  # seconds between training cut-offs
    label: str  # churn or count

    @property
    def kind(self) -> str:
        return LABELS[self.label]

    def describe(self) -> str:
        return (f"task {self.name}: {self.entity} rows, {self.label} of their '{self.events}' rows "
                f"({self.key}) in the {duration(self.window)} after each cut-off; training cut-offs every "
                f"{duration(self.every)}")


def duration(seconds: int) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def parse_tasks(spec, tables: dict, where: str) -> dict[str, EntityTask]:
    """A schema's ``tasks:`` mapping, checked against its tables (relssl.data.database.Table)."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise RelsslError(f"{where}: expected a mapping of task name to {{entity, events, window, label}}")
    out = {}
    for name, task in spec.items():
        at = f"{where}.{name}"
        name = str(name)
        if not isinstance(task, dict):
            raise RelsslError(f"{at}: expected a mapping with entity, events, window and label")
        if any(c in name for c in ".:") or name in tables:
            raise RelsslError(f"{at}: a task's name holds no '.' or ':' and is not a table's name")
        unknown, missing = set(task) - TASK_KEYS, {"entity", "events", "window", "label"} - set(task)
        if unknown or missing:
            raise RelsslError(f"{at}: " + (f"unknown key(s) {sorted(unknown)}" if unknown else
                                            f"missing {sorted(missing)}") + f"; expected {', '.join(sorted(TASK_KEYS))}")
        entity, events = str(task["entity"]), str(task["events"])
        for role, table in (("entity", entity), ("events", events)):
            if table not in tables:
                raise RelsslError(f"{at}: {role} '{table}' is not a table ({', '.join(tables)})")
        if tables[events].time is None:
            raise RelsslError(f"{at}: events table '{events}' has no time column: nothing falls in a window")
        keys = [fk for fk in tables[events].foreign_keys if fk.table == entity]
        if "key" in task:
            keys = [fk for fk in keys if "+".join(fk.columns) == str(task["key"])]
        if len(keys) != 1:
            found = ", ".join("+".join(fk.columns) for fk in tables[events].foreign_keys if fk.table == entity)
            raise RelsslError(f"{at}: '{events}' has {'no' if not found else 'more than one'} foreign key into "
                              f"'{entity}'{' matching key: ' + str(task['key']) if 'key' in task else ''}"
                              + (f"; name one with key: ({found})" if found else ""))
        if task["label"] not in LABELS:
            raise RelsslError(f"{at}: label {task['label']!r}: expected one of {', '.join(LABELS)}")
        window = duration_seconds(task["window"], f"{at}: window")
        out[name] = EntityTask(name, entity, events, str(keys[0]), window,
                               duration_seconds(task.get("every", task["window"]), f"{at}: every"), str(task["label"]))
    return out


@dataclass
class TaskRows:
    """A task's labelled examples: entity row, cut-off time, label and split, one per (entity, cut-off)."""

    entity: np.ndarray  # int64 rows of the entity table
    time: np.ndarray  # int64 cut-off seconds
    label: np.ndarray  # int64: 1 for churn, or the count
    split: np.ndarray  # int8: TRAIN, VAL or TEST

    def __len__(self) -> int:
        return len(self.entity)


def cutoffs(task: EntityTask, cuts: tuple[int, int] | None, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """The cut-off times and their splits, given the split's time cuts and the events' time range."""
    if cuts is None:
        raise RelsslError(f"--task {task.name}: needs a timed seed table (the cut-off times follow its temporal split)")
    last_train, last_val = cuts
    if last_train + task.window > last_val:  # validation labels from test-period rows would choose the model
        raise RelsslError(f"--task {task.name}: the validation window ({duration(task.window)} after "
                          f"{pd.Timestamp(last_train, unit='s')}) runs past the validation period (to "
                          f"{pd.Timestamp(last_val, unit='s')}); use a shorter window or a longer validation split "
                          f"(--split)")
    if last_val + task.window > last:
        raise RelsslError(f"--task {task.name}: the test window ({duration(task.window)} after "
                          f"{pd.Timestamp(last_val, unit='s')}) runs past the last '{task.events}' row "
                          f"({pd.Timestamp(last, unit='s')}); use a shorter window or a longer test split (--split)")
    count = (last_train - task.window - first) // task.every + 1
    if count < 1:
        raise RelsslError(f"--task {task.name}: no training cut-off: the window is longer than the training period")
    if count > MAX_CUTOFFS:
        raise RelsslError(f"--task {task.name}: {count:,} training cut-offs (every {task.every} s); more than "
                          f"{MAX_CUTOFFS:,} means 'every' is too small")
    train = last_train - task.window - task.every * np.arange(count, dtype=np.int64)[::-1]
    times = np.concatenate([train, [last_train, last_val]]).astype(np.int64)
    splits = np.concatenate([np.full(count, TRAIN), [VAL, TEST]]).astype(np.int8)
    return times, splits


def task_rows(task: EntityTask, graph) -> TaskRows:
    """The labelled examples of ``task`` on a prepared database (relssl.data.prepare.DatabaseGraph):
    one pass over the linked rows sorted by time, each cut-off a slice of them."""
    e, v = graph.names.index(task.entity), graph.names.index(task.events)
    _, links = graph.links[v, task.key]
    rows, times = np.asarray(links), np.asarray(graph.times[v])
    linked = rows >= 0
    order = np.argsort(times[linked], kind="stable")
    rows, times = rows[linked][order], times[linked][order]
    if not len(rows):
        raise RelsslError(f"--task {task.name}: no '{task.events}' row links to '{task.entity}'")
    n = graph.num_rows[e]
    started = np.full(n, np.iinfo(np.int64).max)
    firsts, at = np.unique(rows, return_index=True)  # rows are time-sorted: each entity's first link
    started[firsts] = times[at]
    if graph.times[e] is not None:
        started = np.maximum(started, np.asarray(graph.times[e]))
    points, splits = cutoffs(task, graph.cuts, int(times[0]), int(times[-1]))
    parts = []
    for t, split in zip(points.tolist(), splits.tolist()):
        active = np.flatnonzero(started <= t)
        lo, hi = np.searchsorted(times, [t, t + task.window], side="right")
        count = np.bincount(rows[lo:hi], minlength=n)[active]
        label = (count == 0) if task.label == "churn" else count
        parts.append((active, np.full(len(active), t), label, np.full(len(active), split)))
    entity, time, label, split = (np.concatenate(p) for p in zip(*parts))
    return TaskRows(entity.astype(np.int64), time.astype(np.int64), label.astype(np.int64), split.astype(np.int8))
