"""Recommendation data from a database's interactions table (``--interactions ratings``): the
table's first foreign key names the user, its second the item; every row (or every row meeting
``--positive 'rating>=4'``) is an interaction. Item features come from the item table's columns,
no conversion to the LATTICE format: each text column is a modality of its own (sentence
embeddings), each embedding column too, and the numerical and categorical columns together are a
"tabular" modality (numbers standardised, categories one-hot over their most frequent values).

Users and items are those of the positive interactions, each (user, item) pair once (as the
LATTICE files hold: a pair rated twice must not sit in both training and test), split per user
80/10/10 with seed 0 (relssl.recsys.data.split_per_user).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch_frame

from relssl.data.database import Database
from relssl.errors import RelsslError
from relssl.recsys.data import RecData, split_per_user

MAX_ONE_HOT = 100  # values of a categorical item column one-hot encoded; the rest share a zero row
POSITIVE = re.compile(r"^\s*(\w+)\s*(>=|>|<=|<|==)\s*(-?[\d.]+(?:e-?\d+)?)\s*$")


def read_database(spec: str) -> Database:
    """The database a ``--data`` names (a ``tables:`` schema, a SQLite file, a built-in database),
    whatever shape it has: an interactions table is read as tables, never as an event graph."""
    from relssl.data.datasets import resolve
    from relssl.data.schema import load_database, read_yaml
    from relssl.data.sqlite import read_sqlite

    source = resolve(spec)
    source.check_present()
    if source.reader.name == "sqlite":
        return read_sqlite(source.path)
    if source.reader.name == "schema" and isinstance(read_yaml(source.path), dict) and "tables" in read_yaml(source.path):
        return load_database(source.path, source.base)
    raise RelsslError(f"--data {spec}: --interactions needs a database: a 'tables:' schema, a SQLite file or "
                      f"a built-in database")


def positive_rows(df: pd.DataFrame, positive: str | None, table: str) -> np.ndarray:
    """Which rows are interactions: all, or those meeting ``COLUMN OP NUMBER``."""
    if not positive:
        return np.ones(len(df), dtype=bool)
    match = POSITIVE.match(positive)
    if not match or match.group(1) not in df:
        raise RelsslError(f"--positive '{positive}': expected COLUMN>=NUMBER (or >, <=, <, ==) with a column of "
                          f"table '{table}' ({', '.join(map(str, df.columns))})")
    column, op, value = match.group(1), match.group(2), float(match.group(3))
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).all():
        raise RelsslError(f"--positive '{positive}': column '{column}' of table '{table}' holds no numbers")
    with np.errstate(invalid="ignore"):
        return {">=": values >= value, ">": values > value, "<=": values <= value, "<": values < value,
                "==": values == value}[op]


def item_features(df: pd.DataFrame, stypes: dict, vectors: dict, table: str, text=None) -> dict[str, np.ndarray]:
    """Modality -> [items, dim] float32 from an item table's columns (see the module docstring)."""
    features, tabular = {}, []
    for col, stype in stypes.items():
        if stype == torch_frame.text_embedded:
            if text is None:
                from relssl.data.text import TextEmbedder

                text = TextEmbedder()
            features[col] = text(df[col], f"{table}.{col}").astype(np.float32)
        elif stype == torch_frame.embedding:
            features[col] = np.asarray(vectors[col], dtype=np.float32)
        elif stype == torch_frame.numerical:
            x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
            mean, std = (np.nanmean(x), np.nanstd(x)) if np.isfinite(x).any() else (0.0, 0.0)
            tabular.append(np.nan_to_num((x - mean) / (std or 1.0)).reshape(-1, 1))  # missing: the mean
        elif stype == torch_frame.categorical:
            top = df[col].value_counts().index[:MAX_ONE_HOT]
            tabular.append((df[col].to_numpy()[:, None] == top.to_numpy()[None, :]).astype(np.float64))
    if tabular:
        features["tabular"] = np.concatenate(tabular, axis=1).astype(np.float32)
    return features


def recdata_from_table(db: Database, table: str, positive: str | None = None, seed: int = 0,
                       text=None) -> RecData:
    if table not in db.tables:
        raise RelsslError(f"--interactions {table}: not a table of '{db.name}' ({', '.join(db.tables)})")
    t = db.tables[table]
    if len(t.foreign_keys) < 2:
        raise RelsslError(f"--interactions {table}: an interactions table needs two foreign keys (its first names "
                          f"the user, its second the item); it has {len(t.foreign_keys)}")
    item_key = t.foreign_keys[1]
    user_rows, item_rows = db.links[table, 0], db.links[table, 1]
    keep = positive_rows(t.df, positive, table) & (user_rows >= 0) & (item_rows >= 0)
    if not keep.any():
        raise RelsslError(f"--interactions {table}: no linked row is an interaction"
                          + (f" under --positive '{positive}'" if positive else ""))
    user_ids, users = np.unique(user_rows[keep], return_inverse=True)
    item_ids, items = np.unique(item_rows[keep], return_inverse=True)
    items_table = db.tables[item_key.table]
    rows = items_table.df.iloc[item_ids].reset_index(drop=True)
    vectors = {c: v[item_ids] for c, v in items_table.vectors.items()}
    features = item_features(rows, items_table.col_stypes, vectors, item_key.table, text)
    pairs = np.unique(np.stack([users, items], 1).astype(np.int64), axis=0)
    splits = split_per_user(pairs[:, 0], pairs[:, 1], np.random.default_rng(seed))
    return RecData(f"{db.name}.{table}", len(user_ids), len(item_ids), splits, features)
