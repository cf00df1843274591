"""A relational database: tables linked by primary and foreign keys, each with typed feature
columns and, optionally, a time column. Multi-table YAML schemas (relssl.data.schema) and SQLite
files (relssl.data.sqlite) are read into it; like RelBench's ``Database`` of ``Table``s, with
composite keys and several keys into one table.

Integrity is checked once, when the database is built: primary keys unique and non-null, every
foreign key resolved to a row of the table it names (``on_orphans`` decides what happens to the
others: an error, or their rows dropped, or kept unlinked; a null key is an error, or links
nowhere), labels never features. Afterwards each foreign key is an int64 array of referenced row
positions (``Database.links``), -1 where a kept orphan or null key points nowhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch_frame

from relssl.data.relational import RelationalData
from relssl.errors import RelsslError

ON_ORPHANS = ("error", "drop", "keep-null")
NEVER = np.iinfo(np.int64).max  # a label time: the label never becomes known (a cancelled flight's delay)
STYPE_NAMES = {"text_embedded": "text"}  # torch_frame's name -> the schema's


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]  # in this table
    table: str  # the referenced table; its primary key has as many columns, in this order

    def __str__(self) -> str:
        return f"{'+'.join(self.columns)} -> {self.table}"


@dataclass
class Table:
    """One table's rows: feature columns (``col_stypes``), labels, keys and time, as read."""

    name: str
    df: pd.DataFrame
    col_stypes: dict[str, torch_frame.stype] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    time_col: str | None = None
    time: np.ndarray | None = None  # int64 seconds since the Unix epoch, one per row; None: a static table
    label_cols: list[str] = field(default_factory=list)
    transforms: dict[str, str] = field(default_factory=dict)  # column -> "log1p", applied when encoding
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # embedding column -> [rows, dim]
    mask_groups: list[list[str]] = field(default_factory=list)
    # Labels inform later rows of the same table in other rows' trees (a user's earlier ratings).
    labels_as_history: bool = False
    # When each row's labels become known (int64 seconds, NEVER: not at all); None: at the row's time.
    label_time: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.df)

    @property
    def key_columns(self) -> set[str]:
        return set(self.primary_key) | {c for fk in self.foreign_keys for c in fk.columns}

    def check_columns(self) -> None:
        """Every named column exists; keys and labels are not features."""
        named = [*self.col_stypes, *self.label_cols, *self.primary_key, *(c for fk in self.foreign_keys for c in fk.columns)]
        missing = [c for c in dict.fromkeys(named) if c not in self.df and c not in self.vectors]
        if missing:
            raise RelsslError(f"table '{self.name}': column(s) {missing} not found; it has {list(self.df.columns)}")
        for what, cols in (("label", self.label_cols), ("key", sorted(self.key_columns))):
            both = [c for c in cols if c in self.col_stypes]
            if both:
                raise RelsslError(f"table '{self.name}': {what} column(s) {both} cannot also be features "
                                  f"(remove them from columns:)")
        if self.labels_as_history and (self.time is None or not self.label_cols):
            raise RelsslError(f"table '{self.name}': labels_as_history needs labels and a time column (a label "
                              f"informs only rows later than its own)")
        if self.label_time is not None and not self.labels_as_history:
            raise RelsslError(f"table '{self.name}': label_time says when labels inform later rows; it goes with "
                              f"labels_as_history: true")
        if self.time is not None and len(self.time) != len(self.df):
            raise RelsslError(f"table '{self.name}': {len(self.time)} times for {len(self.df)} rows")


def key_strings(df: pd.DataFrame, cols: tuple[str, ...] | list[str]) -> pd.Series:
    """One comparable string per row for the key ``cols`` (<NA> where any part is null). Integral
    floats read as integers, so a key column read as 1.0 (a CSV column with gaps) matches 1."""
    parts = []
    for col in cols:
        ser = df[col]
        if pd.api.types.is_float_dtype(ser) and (ser.dropna() % 1 == 0).all():
            ser = ser.astype("Int64")
        parts.append(ser.astype("string").replace("", pd.NA))  # an empty key is a missing one
    if len(parts) == 1:
        return parts[0]
    out = parts[0].str.cat(parts[1:], sep="\x1f")
    return out.where(~pd.concat(parts, axis=1).isna().any(axis=1))


@dataclass
class Database:
    name: str
    tables: dict[str, Table]
    links: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # (table, fk index) -> row ids
    orphans: dict[tuple[str, int], int] = field(default_factory=dict)  # kept or dropped, per foreign key
    on_orphans: str = "error"  # how check() treated them
    tasks: dict = field(default_factory=dict)  # name -> relssl.data.entity_tasks.EntityTask

    def __post_init__(self) -> None:
        if not self.tables:
            raise RelsslError(f"database '{self.name}': no tables")

    @property
    def has_graph(self) -> bool:
        """Rows are linked by keys: a row has a neighbourhood."""
        return any(t.foreign_keys for t in self.tables.values())

    def check(self, on_orphans: str = "error") -> "Database":
        """Validate keys and resolve every foreign key (see the module docstring); returns self."""
        if on_orphans not in ON_ORPHANS:
            raise RelsslError(f"on_orphans {on_orphans!r}: expected one of {', '.join(ON_ORPHANS)}")
        for table in self.tables.values():
            table.check_columns()
            for fk in table.foreign_keys:
                target = self.tables.get(fk.table)
                if target is None:
                    raise RelsslError(f"table '{table.name}': foreign key {fk} names an unknown table; "
                                      f"tables: {', '.join(self.tables)}")
                if len(target.primary_key) != len(fk.columns):
                    raise RelsslError(f"table '{table.name}': foreign key {fk} has {len(fk.columns)} column(s) but "
                                      f"'{fk.table}' has primary key {list(target.primary_key) or 'none'}")
        self._check_no_empty_cycle()
        index = {name: self._primary_index(t) for name, t in self.tables.items() if t.primary_key}
        # Dropping orphan rows can orphan the rows that reference them: repeat until no row drops
        # (each repeat drops at least one row, so this ends).
        while True:
            dropped = False
            for table in self.tables.values():
                bad_rows = np.zeros(len(table), dtype=bool)
                for i, fk in enumerate(table.foreign_keys):
                    keys = key_strings(table.df, fk.columns)
                    null = keys.isna().to_numpy()
                    rows = index[fk.table].get_indexer(keys.fillna("\x00<null>"))
                    unknown = (rows < 0) & ~null
                    if (null.any() or unknown.any()) and on_orphans == "error":
                        what = [f"{int(unknown.sum())} value(s) not in '{fk.table}' (e.g. {keys[unknown].iloc[0]!r})"
                                if unknown.any() else "", f"{int(null.sum())} null value(s)" if null.any() else ""]
                        raise RelsslError(f"table '{table.name}': foreign key {fk}: {' and '.join(filter(None, what))}"
                                          f"; choose --on-orphans drop (the rows) or keep-null (unlinked), or set "
                                          f"on_orphans: in the schema")
                    self.links[table.name, i] = rows.astype(np.int64)
                    self.orphans[table.name, i] = self.orphans.get((table.name, i), 0) + int(
                        unknown.sum() if on_orphans == "drop" else (null | unknown).sum())
                    bad_rows |= unknown
                if on_orphans == "drop" and bad_rows.any():  # a null key links nowhere and stays
                    self._drop_rows(table, bad_rows)
                    index[table.name] = self._primary_index(table) if table.primary_key else None
                    dropped = True
            if not dropped:
                self.on_orphans = on_orphans
                return self

    def _check_no_empty_cycle(self) -> None:
        """Static tables without features whose keys lead round in a cycle: trees that walk it
        meet rows that carry nothing (no cell, no time), an input error rather than a model."""
        empty = {n for n, t in self.tables.items() if not t.col_stypes and t.time is None}
        edges = {n: sorted({fk.table for fk in self.tables[n].foreign_keys if fk.table in empty}) for n in empty}
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            for nxt in edges[name]:
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    raise RelsslError(f"tables {' -> '.join(cycle)}: a cycle of static tables without features "
                                      f"carries nothing to learn; give one of them a feature column or a time")
                if nxt not in state:
                    visit(nxt, path + [nxt])
            state[name] = 2

        for name in sorted(empty):
            if name not in state:
                visit(name, [name])

    def _primary_index(self, table: Table) -> pd.Index:
        keys = key_strings(table.df, table.primary_key)
        if keys.isna().any():
            row = int(np.argmax(keys.isna().to_numpy()))
            raise RelsslError(f"table '{table.name}': primary key {list(table.primary_key)} is null in "
                              f"{int(keys.isna().sum())} row(s) (first: row {row})")
        dup = keys.duplicated()
        if dup.any():
            raise RelsslError(f"table '{table.name}': primary key {list(table.primary_key)} has "
                              f"{int(dup.sum())} duplicate(s) (e.g. {keys[dup].iloc[0]!r})")
        return pd.Index(keys)

    @staticmethod
    def _drop_rows(table: Table, bad: np.ndarray) -> None:
        keep = ~bad
        if not keep.any():
            raise RelsslError(f"table '{table.name}': every row's foreign key is an orphan: nothing would be left")
        table.df = table.df[keep].reset_index(drop=True)
        if table.time is not None:
            table.time = table.time[keep]
        if table.label_time is not None:
            table.label_time = table.label_time[keep]
        table.vectors = {c: v[keep] for c, v in table.vectors.items()}

    def summary(self) -> str:
        """What the graph will hold: tables (rows, features, time range), key links and orphans."""
        lines = [f"database '{self.name}': {len(self.tables)} table(s)"]
        for table in self.tables.values():
            kinds = pd.Series([STYPE_NAMES.get(s.value, s.value) for s in table.col_stypes.values()]).value_counts().to_dict()
            features = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "no features"
            if table.time is None:
                when = "static"
            else:
                lo, hi = (pd.Timestamp(int(v), unit="s") for v in (table.time.min(), table.time.max()))
                when = f"time '{table.time_col}' {lo} .. {hi}"
            key = f"primary key {'+'.join(table.primary_key)}" if table.primary_key else "no primary key"
            labels = f"; labels {', '.join(table.label_cols)}" if table.label_cols else ""
            labels += (" (history of later rows" + (", each once known: label_time" if table.label_time is not None
                                                    else "") + ")") if table.labels_as_history else ""
            lines.append(f"  {table.name}: {len(table):,} rows; {features}; {key}; {when}{labels}")
        for (name, i), rows in self.links.items():
            fk = self.tables[name].foreign_keys[i]
            unlinked = int((rows < 0).sum())
            notes = [f"{self.orphans.get((name, i), 0):,} orphan row(s) dropped" if self.on_orphans == "drop" and
                     self.orphans.get((name, i)) else "", f"{unlinked:,} unlinked (null or unknown key)" if unlinked else ""]
            lines.append(f"  link {name}.{fk}: {len(rows) - unlinked:,} of {len(rows):,} rows linked"
                         + "".join(f"; {n}" for n in notes if n))
        lines += [f"  {task.describe()}" for task in self.tasks.values()]
        return "\n".join(lines)


def as_event_graph(db: Database) -> RelationalData | None:
    """The database in relssl's event-graph form where its shape is one: a single table without
    keys, or one event table whose two foreign keys link every row to entity rows (accounts,
    users, items), the entity tables static and linked by nothing else, with features only where
    both keys name the same table. None for any other shape: it trains as a database of rows
    linked by keys (relssl.graph.relations)."""
    def single(table: Table, entities: dict | None = None) -> RelationalData:
        return RelationalData(name=db.name, events=table.df, col_stypes=table.col_stypes,
                              label_cols=table.label_cols, time_col=table.time_col, time=table.time,
                              transforms=table.transforms, vectors=table.vectors, mask_groups=table.mask_groups,
                              **(entities or {}))

    if len(db.tables) == 1 and not next(iter(db.tables.values())).foreign_keys:
        return single(next(iter(db.tables.values())))
    events = [t for t in db.tables.values() if len(t.foreign_keys) == 2]
    if len(events) != 1:
        return None
    ev = events[0]
    targets = [db.tables[fk.table] for fk in ev.foreign_keys]
    if set(db.tables) != {ev.name, *(t.name for t in targets)} or ev.name in {t.name for t in targets}:
        return None
    if any(t.foreign_keys or t.time is not None or (db.links[ev.name, i] < 0).any() for i, t in enumerate(targets)):
        return None
    src, dst = db.links[ev.name, 0], db.links[ev.name, 1]
    if targets[0].name == targets[1].name:
        entity = targets[0]
        keys = entity.df[list(entity.primary_key)].reset_index(drop=True)
        return single(ev, dict(src=src, dst=dst, num_entities=len(entity), entity_keys=keys,
                               entities=entity.df.reset_index(drop=True), entity_col_stypes=entity.col_stypes,
                               entity_label_cols=entity.label_cols))
    if any(t.col_stypes or t.label_cols for t in targets):
        return None
    first = len(targets[0])
    keys = pd.concat([t.df[list(t.primary_key)].astype("string").assign(entity=t.name) for t in targets],
                     ignore_index=True)
    keys = keys[["entity", *(c for c in keys.columns if c != "entity")]]
    return single(ev, dict(src=src, dst=dst + first, num_entities=first + len(targets[1]), entity_keys=keys))


def event_graph_or_database(db: Database) -> RelationalData | Database:
    """What a database trains as: the event graph where its shape is one, else itself (also when it
    defines entity tasks, which predict rows of its tables)."""
    return db if db.tasks else as_event_graph(db) or db
