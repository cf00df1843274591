"""A draft multi-table schema from a folder of CSV/Parquet files or a SQLite file: column types
from the values, primary keys from names and uniqueness, foreign keys from names and value
containment, time columns from parseable dates (``relssl schema infer``). A draft is for the user
to read and edit; nothing is trained on a guess without it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from relssl.data.database import STYPE_NAMES, key_strings
from relssl.data.schema import schema_name
from relssl.data.sqlite import is_sqlite, read_sqlite, read_sqlite_frames
from relssl.data.tables import guess_stype, read_table
from relssl.errors import RelsslError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz")


def _singular(name: str) -> str:
    return re.sub(r"(ies)$", "y", name) if name.endswith("ies") else re.sub(r"s$", "", name)


def guess_primary_key(name: str, df: pd.DataFrame) -> str | None:
    """The first unique, non-null column named id, <table>_id or <singular table>_id, else the
    first unique, non-null one whose name ends in id."""
    name = name.lower()
    wanted = {"id", f"{name}_id", f"{_singular(name)}_id", f"{name}id", f"{_singular(name)}id"}
    unique = [c for c in df.columns if df[c].notna().all() and df[c].is_unique]
    named = [c for c in unique if str(c).lower() in wanted] or [c for c in unique if str(c).lower().endswith("id")]
    return named[0] if named else None


def _key_set(ser: pd.Series) -> set[str]:
    return set(key_strings(ser.to_frame(), [ser.name]).dropna())


def guess_foreign_keys(name: str, df: pd.DataFrame, keys: dict[str, tuple[str, pd.DataFrame]]) -> dict[str, str]:
    """column -> table, where the column is named like another table's primary key (its name, or
    <singular table>_id) and at least 95 % of its non-null values are keys of that table."""
    out = {}
    own = keys.get(name, (None,))[0]
    for col in df.columns:
        if col == own:
            continue
        for other, (pk, other_df) in keys.items():
            # a key named plainly "id" matches only <singular table>_id elsewhere
            names = {f"{_singular(other.lower())}_id"} | ({str(pk).lower()} if str(pk).lower() != "id" else set())
            if str(col).lower() not in names:
                continue
            values = _key_set(df[col])
            if values and len(values & _key_set(other_df[pk])) >= 0.95 * len(values):
                out[col] = other
                break
    return out


def read_tables(path: Path) -> dict[str, tuple[str, pd.DataFrame]]:
    """Table name -> (file name, frame) of a folder of files."""
    if not path.is_dir():
        raise RelsslError(f"{path}: expected a folder of CSV/TSV/Parquet files or a SQLite file")
    files = sorted(f for f in path.iterdir() if f.name.endswith(TABLE_SUFFIXES))
    if not files:
        raise RelsslError(f"{path}: no {', '.join(TABLE_SUFFIXES)} files")
    return {re.sub(r"\.(csv|tsv|parquet)(\.gz)?$", "", f.name): (f.name, read_table(f)) for f in files}


def declared_schema(path: Path, folder: Path) -> dict:
    """A SQLite file's declared keys and types, as a schema in ``folder`` over it."""
    db = read_sqlite(path, on_orphans="keep-null")
    raw = read_sqlite_frames(path)
    out = {}
    for name, table in db.tables.items():
        spec: dict = {}
        if table.primary_key:
            spec["primary_key"] = table.primary_key[0] if len(table.primary_key) == 1 else list(table.primary_key)
        if table.foreign_keys:
            spec["foreign_keys"] = ({fk.columns[0]: fk.table for fk in table.foreign_keys}
                                    if all(len(fk.columns) == 1 for fk in table.foreign_keys) else
                                    [{"columns": list(fk.columns), "table": fk.table} for fk in table.foreign_keys])
        if table.time_col:
            spec["time"] = table.time_col
        spec["columns"] = {c: STYPE_NAMES.get(s.value, s.value) for c, s in table.col_stypes.items()}
        for col, stype in table.col_stypes.items():  # dates stored as numbers: Unix seconds
            if stype.value == "timestamp" and pd.api.types.is_numeric_dtype(raw[name][col]):
                spec["columns"][col] = {"stype": "timestamp", "unit": "s"}
        out[name] = spec
    return {"name": path.stem, "sqlite": schema_name(folder, path), "tables": out}


def draft_schema(path: str | Path, folder: str | Path | None = None) -> dict:
    """The draft schema of ``path`` as a YAML-ready mapping (``relssl schema infer``): a SQLite
    file's declarations, or guesses over a folder of files. Its file paths are as a schema in
    ``folder`` (the one it is written to; default: the data's) reads them."""
    path = Path(path)
    sqlite = path.is_file() and is_sqlite(path)
    folder = Path(folder) if folder is not None else path.parent if sqlite else path
    if sqlite:
        return declared_schema(path, folder)
    tables = read_tables(path)
    keys = {}
    for name, (_, df) in tables.items():
        pk = guess_primary_key(name, df)
        if pk is not None:
            keys[name] = (pk, df)
    out = {}
    for name, (file, df) in tables.items():
        spec: dict = {"path": schema_name(folder, path / file)}
        pk = keys.get(name, (None,))[0]
        fks = guess_foreign_keys(name, df, keys)
        if pk is not None:
            spec["primary_key"] = pk
        if fks:
            spec["foreign_keys"] = fks
        lowered = {str(c).lower(): c for c in df.columns}
        columns = {}
        for col in df.columns:
            if col == pk or col in fks:
                continue
            stype = guess_stype(df[col])
            if stype is not None:
                columns[str(col)] = stype
        time_cols = [c for c, s in columns.items() if s == "timestamp"]
        if time_cols:
            spec["time"] = time_cols[0]
        elif all(part in lowered for part in ("year", "month", "day")):
            spec["time"] = {"columns": [lowered["year"], lowered["month"], lowered["day"]]}
            for part in ("year", "month", "day"):
                columns.pop(lowered[part], None)
        spec["columns"] = columns
        out[name] = spec
    return {"name": path.name, "tables": out}
