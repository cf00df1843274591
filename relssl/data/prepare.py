"""From RelationalData to tensors ready for training: split by time, encode with training stats."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch_frame

from relssl.data.database import Database
from relssl.data.encoding import EncodedTable, encode_table
from relssl.data.relational import RelationalData
from relssl.data.splits import TRAIN, VAL, split_by_time, temporal_split, time_cuts
from relssl.errors import RelsslError


@dataclass
class DatabaseGraph:
    """The tables around a database's seed table, ready for relssl.graph.relations: each table's
    encoded rows (None without features; the seed table's are ``PreparedData.events``), times,
    foreign keys as (target table, row ids) and the time cuts of the seed table's splits."""

    names: list[str]
    num_rows: list[int]
    seed_table: int
    tables: list[EncodedTable | None]
    times: list[torch.Tensor | None]
    links: dict[tuple[int, str], tuple[int, torch.Tensor]]
    cuts: tuple[int, int] | None  # last training and validation time (None: the seed table is static)
    # Per table with labels_as_history: its label columns, encoded as features of rows earlier than a tree's seed.
    history: list[EncodedTable | None] = field(default_factory=list)
    # The tables whose rows pretext tasks train on, the run's first first (one row encoder each);
    # default: the seed table alone.
    pretext: list[int] = field(default_factory=list)
    # Each pretext table's split (table index -> int8 per row): a static one's rows of later splits
    # stay out of every tree of an earlier split.
    splits: dict[int, np.ndarray] = field(default_factory=dict)
    # Per table, the rows whose labels the history may show (absent: all; relssl.eval.finetune.labelled_history).
    history_known: dict[int, torch.Tensor] = field(default_factory=dict)
    # Per table with labels_as_history and a label_time: when each row's labels become known (None: at its time).
    label_times: list[torch.Tensor | None] = field(default_factory=list)
    # The database's entity tasks (name -> relssl.data.entity_tasks.EntityTask), labelled at cut-off times.
    tasks: dict = field(default_factory=dict)

    def visible(self, split: int, seed_split: np.ndarray) -> list[torch.Tensor | None]:
        """Rows a tree of ``split`` may hold: the seed table's rows of that split or earlier, other
        timed tables' rows up to the split's last time (all of them for test), static rows always."""
        out = []
        for t, time in enumerate(self.times):
            if t == self.seed_table:
                out.append(torch.from_numpy(seed_split <= split))
            elif t in self.splits and time is None:  # another pretext table, split at random
                out.append(torch.from_numpy(self.splits[t] <= split))
            elif time is None or self.cuts is None or split > VAL:
                out.append(None)
            else:
                out.append(time <= self.cuts[split])
        return out


@dataclass
class PreparedData:
    data: RelationalData | None  # the source tables; None when loaded from the cache (training needs none)
    split: np.ndarray  # int8 per event: 0 train, 1 val, 2 test
    events: EncodedTable
    entities: EncodedTable | None
    src: torch.Tensor | None
    dst: torch.Tensor | None
    time: torch.Tensor | None
    num_entities: int = 0
    mask_groups: list[list[str]] = field(default_factory=list)  # columns masked together (RelationalData)
    database: DatabaseGraph | None = None  # a database's other tables (``events`` is its seed table)
    views: dict[str, "PreparedData"] = field(default_factory=dict)  # each pretext table's (prepare_database)

    def rows(self, split: int) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(self.split == split))

    @property
    def has_graph(self) -> bool:
        """Events link source and target entities (the event graph)."""
        return self.src is not None

    @property
    def has_context(self) -> bool:
        """A row has a neighbourhood: the event graph's, or its database's linked rows."""
        return self.has_graph or self.database is not None


def long_tensor(a) -> torch.Tensor | None:
    """An int64 array (ids, times) as a tensor sharing its memory where it can; None stays None."""
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def prepare(data: RelationalData, fractions=(0.6, 0.2, 0.2), seed: int = 0,
            max_categories: int = 1000, text=None) -> PreparedData:
    """Split events by time and encode them; entity features are fitted on entities that appear
    in training events (an entity's own row carries no time, so this is the leakage-safe set).
    ``text`` embeds text columns (a ``relssl.data.text.TextEmbedder``; default: offline MiniLM, cached)."""
    if isinstance(data, Database):
        raise RelsslError(f"database '{data.name}': this command takes one event table so far; pretrain, finetune, "
                          f"embed and experiment downstream take a database of several tables (with --table)")
    split = temporal_split(data.time, data.num_events, fractions, seed)
    train_rows = np.flatnonzero(split == TRAIN)
    events = encode_table(data.events, data.col_stypes, train_rows, data.transforms, max_categories, "events",
                          data.vectors, text)
    entities = None
    if data.entities is not None and data.entity_col_stypes:
        seen = np.unique(np.concatenate([data.src[train_rows], data.dst[train_rows]]))
        entities = encode_table(data.entities, data.entity_col_stypes, seen, {}, max_categories, "entities",
                                text=text)

    return PreparedData(data, split, events, entities, long_tensor(data.src), long_tensor(data.dst),
                        long_tensor(data.time), data.num_entities, data.mask_groups)


def _linked_to(db: Database, name: str, pretext: list[str], splits: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of the static table ``name`` that training rows of the pretext tables reference or are
    referenced by: like an event graph's entities, fitted on those that take part in training (a
    species first caught after the training period gets the unknown category, not an embedding
    no gradient ever reached). A static table linked to no pretext table directly, or linked from
    no training row: all rows."""
    linked, adjacent = [], False
    for (child, i), rows in db.links.items():
        fk = db.tables[child].foreign_keys[i]
        if child in pretext and fk.table == name:
            adjacent = True
            linked.append(rows[np.flatnonzero(splits[child] == TRAIN)])
        elif child == name and fk.table in pretext:
            adjacent = True
            linked.append(np.flatnonzero(np.isin(rows, np.flatnonzero(splits[fk.table] == TRAIN))))
    found = np.unique(np.concatenate(linked)) if linked else np.zeros(0, dtype=np.int64)
    found = found[found >= 0]
    return found if adjacent and len(found) else np.arange(len(db.tables[name]))


def label_stypes(t) -> dict:
    """A table's label columns as features of later rows: numbers stay numerical (a rating),
    anything else is a category (a class)."""
    return {c: torch_frame.numerical if pd.api.types.is_numeric_dtype(t.df[c]) and not pd.api.types.is_bool_dtype(
        t.df[c]) else torch_frame.categorical for c in t.label_cols}


def label_history(t, train_rows: np.ndarray, max_categories: int, fitted: dict | None = None,
                  stypes: dict | None = None) -> EncodedTable:
    """A table's labels encoded as features of other rows' trees (``label_stypes``; ``fitted``: a
    trained run's statistics for new rows, ``stypes`` its columns)."""
    return encode_table(t.df, stypes or label_stypes(t), train_rows, {}, max_categories,
                        f"{t.name} (labels as history)", fitted=fitted)


def prepare_database(db: Database, table: str | None, fractions=(0.6, 0.2, 0.2), seed: int = 0,
                     max_categories: int = 1000, text=None, pretext: list[str] | None = None) -> PreparedData:
    """Pretext tasks on the rows of ``table`` (default: the timed table with the most rows, else the
    largest), split by time; every other table encoded with statistics from rows up to the last
    training time (static tables: the rows linked to training rows, ``_linked_to``), for the trees
    of relssl.graph.relations. With ``pretext`` (several tables, ``table`` among them) the time cuts
    come from all their rows together, so every table's training rows end at one time and one
    encoding serves them all; ``database_view`` gives each its own view."""
    names = list(db.tables)
    featured = [n for n in names if db.tables[n].col_stypes]
    if table is None:
        timed = [n for n in featured if db.tables[n].time is not None]
        table = (pretext or [None])[0] or max(timed or featured or names, key=lambda n: len(db.tables[n]))
    given = ",".join(pretext) if pretext else None  # --tables, named as given in its errors
    pretext = list(dict.fromkeys(pretext or [table]))
    for name in pretext:
        where = f"--tables {given}: table '{name}'" if given else f"--table {name}"
        if name not in db.tables:
            raise RelsslError(f"{where}: not a table of '{db.name}' ({', '.join(names)})")
        if not db.tables[name].col_stypes:
            raise RelsslError(f"{where}: the table has no feature columns to pre-train on")
    if table not in pretext:
        raise RelsslError(f"--table {table}: not one of --tables {','.join(pretext)}")
    times = [db.tables[n].time for n in pretext if db.tables[n].time is not None]
    cuts = None
    if times:
        unique, counts = np.unique(np.concatenate(times), return_counts=True)
        cuts = time_cuts(unique, counts, fractions)
    splits = {n: split_by_time(db.tables[n].time, cuts) if db.tables[n].time is not None else
              temporal_split(None, len(db.tables[n]), fractions, seed) for n in pretext}
    tables, history = [], []
    for name in names:
        t = db.tables[name]
        if name in splits:
            train_rows = np.flatnonzero(splits[name] == TRAIN)
        elif t.time is not None and cuts is not None:
            train_rows = np.flatnonzero(split_by_time(t.time, cuts) == TRAIN)
        else:
            train_rows = _linked_to(db, name, pretext, splits)
        tables.append(encode_table(t.df, t.col_stypes, train_rows, t.transforms, max_categories, name, t.vectors,
                                   text) if t.col_stypes else None)
        if t.labels_as_history:  # statistics of the labels known by the end of training (label_time)
            known = train_rows if t.label_time is None or cuts is None else \
                train_rows[t.label_time[train_rows] <= cuts[0]]
            history.append(label_history(t, known, max_categories))
        else:
            history.append(None)

    index = {n: i for i, n in enumerate(names)}
    links = {(index[name], str(fk)): (index[fk.table], long_tensor(db.links[name, i]))
             for name, t in db.tables.items() for i, fk in enumerate(t.foreign_keys)}
    graph = DatabaseGraph(names, [len(db.tables[n]) for n in names], index[table], tables,
                          [long_tensor(db.tables[n].time) for n in names], links, cuts, history,
                          [index[n] for n in pretext], {index[n]: splits[n] for n in pretext}, tasks=db.tasks,
                          label_times=[long_tensor(db.tables[n].label_time) for n in names])
    views = {n: database_view(db, graph, n, splits[n]) for n in pretext}
    for view in views.values():
        view.views = views
    return views[table]


def database_view(db: Database, graph: DatabaseGraph, name: str, split: np.ndarray) -> PreparedData:
    """The database as the tasks on ``name``'s rows see it: that table is the seed table."""
    t, seed = db.tables[name], graph.names.index(name)
    # The seed table on its own, for what reads labels and raw columns (downstream tasks, baselines).
    data = RelationalData(name=db.name, events=t.df, col_stypes=t.col_stypes, label_cols=t.label_cols,
                          time_col=t.time_col, time=t.time, transforms=t.transforms, vectors=t.vectors,
                          mask_groups=t.mask_groups)
    return PreparedData(data, split, graph.tables[seed], None, None, None,
                        None if t.time is None else torch.from_numpy(np.ascontiguousarray(t.time, dtype=np.int64)),
                        mask_groups=t.mask_groups, database=replace(graph, seed_table=seed))
