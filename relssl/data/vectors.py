"""Precomputed embedding columns (image or audio features): vectors in a file, joined to rows by key.

Rows whose key has no vector get the all-zero vector, relssl's "missing" embedding (the same
convention as missing text), so a vector file must not contain all-zero vectors itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relssl.errors import RelsslError


def read_vectors(path: Path, key: str, keys_path: Path | None = None) -> tuple[pd.Index, np.ndarray]:
    """Keys and [n, dim] float32 vectors from Parquet (column ``key`` plus one list column or several
    numeric columns) or from .npy (row i belongs to line i of the ``keys_path`` text file)."""
    if not path.exists():
        raise RelsslError(f"{path}: vector file not found")
    if path.suffix == ".npy":
        if keys_path is None:
            raise RelsslError(f"{path}: a .npy vector file needs 'keys': a text file with one key per line")
        if not keys_path.exists():
            raise RelsslError(f"{keys_path}: key file not found")
        vectors = np.load(path, allow_pickle=False)
        keys = pd.Index(pd.Series(keys_path.read_text().splitlines(), dtype="string"))
    elif path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise RelsslError(f"{path}: cannot read Parquet: {err}") from None
        if key not in table.column_names:
            raise RelsslError(f"{path}: no key column '{key}'; the file has {table.column_names}")
        rest = [c for c in table.column_names if c != key]
        lists = [c for c in rest if pa.types.is_list(table[c].type) or pa.types.is_fixed_size_list(table[c].type)]
        if len(lists) == 1 and len(rest) == 1:
            column = table[lists[0]].combine_chunks()
            lengths = np.unique(pc.list_value_length(column).to_numpy(zero_copy_only=False))
            if len(lengths) != 1:
                raise RelsslError(f"{path}: column '{lists[0]}' holds vectors of different lengths {lengths[:5].tolist()}")
            vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), int(lengths[0]))
        else:
            bad = [c for c in rest if not pa.types.is_floating(table[c].type) and not pa.types.is_integer(table[c].type)]
            if bad or not rest:
                raise RelsslError(f"{path}: expected '{key}' plus one list column or numeric columns; "
                                  f"cannot use {bad or 'no other column'}")
            vectors = np.column_stack([table[c].to_numpy() for c in rest])
        keys = pd.Index(table[key].to_pandas().astype("string"))
    else:
        raise RelsslError(f"{path}: expected a .npy or .parquet vector file")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(keys):
        raise RelsslError(f"{path}: expected one vector per key ({len(keys)} keys), got an array of shape {vectors.shape}")
    return keys, vectors


def join_vectors(row_keys: pd.Series, keys: pd.Index, vectors: np.ndarray, where: str) -> np.ndarray:
    """[len(row_keys), dim] vectors looked up by key; rows without a vector get zeros (missing)."""
    if keys.has_duplicates:
        raise RelsslError(f"{where}: key {keys[keys.duplicated()][0]!r} has more than one vector")
    if not np.isfinite(vectors).all():
        raise RelsslError(f"{where}: vectors contain NaN or infinite values")
    zero = ~vectors.any(axis=1)
    if zero.any():
        raise RelsslError(f"{where}: the vector of key {keys[int(np.argmax(zero))]!r} is all zeros, which "
                          f"relssl reserves for 'missing'")
    index = keys.get_indexer(row_keys.astype("string"))
    out = np.zeros((len(row_keys), vectors.shape[1]), dtype=np.float32)
    found = index >= 0
    out[found] = vectors[index[found]]
    return out
