"""A SQLite file as a Database: its tables, the primary and foreign keys it declares, and column
types from its declarations (stdlib sqlite3, opened read-only). String columns are told apart as
categorical, text or timestamp by their values (relssl.data.tables.guess_stype); the first
timestamp column of a table without empty values is its time (numbers: Unix seconds). A YAML schema with ``sqlite: FILE`` overrides any of this per table.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd
import torch_frame

from relssl.data.database import Database, ForeignKey, Table
from relssl.data.tables import STYPES, epoch_seconds, guess_stype, parse_time
from relssl.errors import RelsslError

MAGIC = b"SQLite format 3\x00"


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise RelsslError(f"{path}: file not found")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as err:
        raise RelsslError(f"{path}: cannot read as SQLite: {err}") from None
    return con


def _table_names(con: sqlite3.Connection) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def read_sqlite_frames(path: Path, names: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Table name -> its rows, for every table of the file (or ``names``)."""
    with closing(_connect(path)) as con:
        known = _table_names(con)
        for name in names or []:
            if name not in known:
                raise RelsslError(f"{path}: no table '{name}'; it has {', '.join(known) or 'none'}")
        try:
            return {name: pd.read_sql_query(f"SELECT * FROM {_quote(name)}", con) for name in names or known}
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
            raise RelsslError(f"{path}: cannot read its tables: {err}") from None


def _declared(con: sqlite3.Connection, name: str) -> tuple[dict[str, str], tuple[str, ...], list[tuple]]:
    """(column -> declared type, primary key, foreign keys as (columns, table, referenced columns or
    None for the primary key)) of one table, the foreign keys in column order (SQLite lists the
    last declared first): an event's source key comes first."""
    info = con.execute(f"PRAGMA table_info({_quote(name)})").fetchall()  # cid, name, type, notnull, default, pk
    types = {row[1]: (row[2] or "").upper() for row in info}
    primary = tuple(row[1] for row in sorted((r for r in info if r[5] > 0), key=lambda r: r[5]))
    groups: dict[int, list] = {}
    for fk_id, seq, table, column, to, *_ in con.execute(f"PRAGMA foreign_key_list({_quote(name)})").fetchall():
        groups.setdefault(fk_id, []).append((seq, table, column, to))
    position = {row[1]: row[0] for row in info}
    fks = [(tuple(c for _, _, c, _ in sorted(parts)), parts[0][1],
            None if any(to is None for *_, to in parts) else tuple(to for *_, to in sorted(parts)))
           for parts in groups.values()]
    return types, primary, sorted(fks, key=lambda fk: position[fk[0][0]])


def _foreign_key(path: Path, name: str, columns: tuple, table: str, to: tuple | None,
                 primary: dict[str, tuple]) -> ForeignKey:
    """A declared foreign key with its columns in the order of the referenced primary key."""
    target = primary.get(table, ())
    if to is None or to == target:
        return ForeignKey(columns, table)
    if sorted(to) != sorted(target):
        raise RelsslError(f"{path}: table '{name}': foreign key {list(columns)} references {list(to)} of '{table}', "
                          f"which is not its primary key {list(target) or '(none)'}; relssl links rows by primary keys")
    by_target = dict(zip(to, columns))
    return ForeignKey(tuple(by_target[c] for c in target), table)


def stype_of(declared: str, values: pd.Series) -> str | None:
    """The schema stype of a column from its declared SQLite type (affinity rules) and values."""
    if "DATE" in declared or "TIME" in declared:
        return "timestamp"
    if "BLOB" in declared:
        return None
    if any(t in declared for t in ("INT", "REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        guess = guess_stype(values)
        return None if guess is None else "categorical" if guess == "categorical" else "numerical"
    return guess_stype(values)


def read_sqlite(path: str | Path, on_orphans: str = "error") -> Database:
    path = Path(path)
    frames = read_sqlite_frames(path)
    tables = {}
    with closing(_connect(path)) as con:
        declared = {name: _declared(con, name) for name in frames}
        primaries = {name: primary for name, (_, primary, _) in declared.items()}
        for name, df in frames.items():
            types, primary, raw_fks = declared[name]
            fks = [_foreign_key(path, name, *fk, primaries) for fk in raw_fks]
            keys = set(primary) | {c for fk in fks for c in fk.columns}
            stypes = {}
            for col in df.columns:
                stype = None if col in keys else stype_of(types.get(col, ""), df[col])
                if stype is not None:
                    stypes[col] = STYPES[stype]
            time_col = time = None
            for col, stype in stypes.items():
                if stype == torch_frame.timestamp:
                    complete = bool(df[col].notna().all())
                    df[col] = parse_time(df[col], f"{path}: table '{name}' column '{col}'",
                                         unit="s" if pd.api.types.is_numeric_dtype(df[col]) else None,
                                         allow_missing=True)
                    if time_col is None and complete:  # a row's time: the first date column never empty
                        time_col, time = col, epoch_seconds(df[col])
            tables[name] = Table(name, df, stypes, primary, fks, time_col, time)
    if not tables:
        raise RelsslError(f"{path}: the SQLite file has no tables")
    return Database(path.stem, tables).check(on_orphans)
