"""Out-of-core ingestion of IBM AMLworld CSVs straight into memory-mapped arrays.

Files such as HI-Large (180 M rows) do not fit in memory as a pandas table, so the file is
streamed twice, chunk by chunk: a cheap first pass over the Timestamp column keeps only a count
per distinct timestamp (the exact temporal split cuts follow from it), the second pass encodes
every chunk into preallocated ``.npy`` memory maps and fits the training statistics as it goes
(category counts of training rows; numerical values are staged so the statistics are computed
by the same pytorch-frame code as the in-memory path). Category codes are remapped to the
training vocabulary at the end, again chunk by chunk. The result equals
``prepare(read_ibm_aml(path))`` exactly, whatever the chunk size (tested).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import torch_frame
from torch_frame.data.mapper import TimestampTensorMapper
from torch_frame.data.stats import StatType, compute_col_stats

from relssl.data.encoding import TRANSFORMS as TRANSFORM_FNS
from relssl.data.encoding import numerical_stats, ranked_categories
from relssl.data.ibm_aml import (AMOUNTS, COL_STYPES, COLUMNS, TIME_FORMAT, TRANSFORMS, _TYPES, AccountIds, FirstSeenIds,
                                 _check_header, _check_values, _conversion_error, bad_amounts, warn_bad_amounts)
from relssl.data.splits import TRAIN, split_by_time, time_cuts
from relssl.errors import RelsslError
from relssl.files import allocate

CHUNK_BYTES = 64 << 20  # ~600 k AML rows per chunk: a few hundred MiB of transient memory
REMAP_ROWS = 1 << 20  # rows per step when remapping staged category codes


def _stream(path: Path, chunk_bytes: int, columns: list[str] | None = None):
    """Typed record batches of the file's rows (header skipped), about ``chunk_bytes`` of CSV each."""
    read_options = pv.ReadOptions(column_names=COLUMNS, skip_rows=1, block_size=chunk_bytes)
    convert_options = pv.ConvertOptions(column_types=_TYPES, timestamp_parsers=[TIME_FORMAT], null_values=[],
                                        strings_can_be_null=False, include_columns=columns)
    try:
        for batch in pv.open_csv(path, read_options=read_options, convert_options=convert_options):
            yield batch
    except pa.ArrowInvalid as exc:
        raise _conversion_error(exc, path, path, 1) from None


def time_counts(path: Path, chunk_bytes: int = CHUNK_BYTES, drop_bad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """First pass: each distinct timestamp (epoch seconds) and its number of rows (``drop_bad``:
    of the rows without a bad amount, those --on-bad-values drop keeps)."""
    times, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for batch in _stream(path, chunk_bytes, ["Timestamp", *AMOUNTS] if drop_bad else ["Timestamp"]):
        t = pc.cast(batch["Timestamp"], pa.int64()).to_numpy()
        if drop_bad:
            t = t[~np.logical_or.reduce(list(bad_amounts(batch).values()))]
        u, c = np.unique(t, return_counts=True)
        times, inverse = np.unique(np.concatenate([times, u]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([counts, c]), minlength=len(times)).astype(np.int64)
    return times, counts


def ingest_ibm_aml(path: str | Path, out: Path, fractions=(0.6, 0.2, 0.2), max_categories: int = 1000,
                   chunk_bytes: int = CHUNK_BYTES, on_bad_values: str = "error") -> tuple[dict[str, np.ndarray], dict]:
    """Encode an AMLworld ``*_Trans.csv`` into ``out/<name>.npy`` memory maps.

    Returns the arrays (split, src, dst, time, events.<stype>) and the metadata a cache entry
    records (name, num_entities, the events table's column names and training statistics).
    """
    path = Path(path)
    _check_header(path)
    unique_times, counts = time_counts(path, chunk_bytes, drop_bad=on_bad_values == "drop")
    n = int(counts.sum())
    if n == 0:
        raise RelsslError(f"{path}: the file has a header but no transaction rows"
                          + (" it can use (every one held a bad amount)" if on_bad_values == "drop" else ""))
    cuts = time_cuts(unique_times, counts, fractions)

    # pytorch-frame orders a stype's columns by name
    num_cols, cat_cols, time_cols = (sorted(c for c, s in COL_STYPES.items() if s == stype)
                                     for stype in (torch_frame.numerical, torch_frame.categorical, torch_frame.timestamp))
    out.mkdir(parents=True, exist_ok=True)

    def array(name: str, dtype, shape: tuple) -> np.ndarray:
        mapped = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        allocate(out / f"{name}.npy")  # a full disk: ENOSPC now, not a SIGBUS mid-ingest
        return mapped

    arrays = {
        "split": array("split", np.int8, (n,)), "src": array("src", np.int64, (n,)),
        "dst": array("dst", np.int64, (n,)), "time": array("time", np.int64, (n,)),
        "events.numerical": array("events.numerical", np.float32, (n, len(num_cols))),
        "events.categorical": array("events.categorical", np.int64, (n, len(cat_cols))),
        "events.timestamp": array("events.timestamp", np.int64, (n, len(time_cols), 7)),
    }
    # Staged inputs of the statistics: transformed numbers in float64, category codes by first appearance.
    staged_num = array("staged.numerical", np.float64, (n, len(num_cols)))
    staged_cat = array("staged.categorical", np.int64, (n, len(cat_cols)))
    accounts = AccountIds()
    vocab = {c: FirstSeenIds() for c in cat_cols}
    train_counts = {c: np.zeros(0, dtype=np.int64) for c in cat_cols}

    start, read, bad = 0, 0, 0
    for batch in _stream(path, chunk_bytes):
        table, changed = _check_values(pa.Table.from_batches([batch]), path, on_bad_values, first_row=read)
        read, bad = read + batch.num_rows, bad + changed
        if changed:  # rows dropped or amounts made missing: the chunk as checked
            if not table.num_rows:
                continue
            batch = table.combine_chunks().to_batches()[0]
        rows = slice(start, start + batch.num_rows)
        time = pc.cast(batch["Timestamp"], pa.int64()).to_numpy()
        split = split_by_time(time, cuts)
        train = split == TRAIN
        arrays["time"][rows], arrays["split"][rows] = time, split
        arrays["src"][rows], arrays["dst"][rows] = accounts(batch)
        for j, col in enumerate(num_cols):
            values = batch[col].to_numpy().astype(np.float64)
            if col in TRANSFORMS:
                values = TRANSFORM_FNS[TRANSFORMS[col]](values)
            staged_num[rows, j] = values
            arrays["events.numerical"][rows, j] = values  # float32, as pytorch-frame stores it
        for j, col in enumerate(cat_cols):
            codes = vocab[col](batch[col].to_numpy(zero_copy_only=False))
            staged_cat[rows, j] = codes
            seen = np.bincount(codes[train], minlength=len(vocab[col].index))
            seen[: len(train_counts[col])] += train_counts[col]
            train_counts[col] = seen
        for j, col in enumerate(time_cols):
            stamps = pd.Series(pd.to_datetime(batch[col].to_numpy()))
            with warnings.catch_warnings():  # pytorch-frame wraps pandas' read-only views; it never writes to them
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                arrays["events.timestamp"][rows, j] = TimestampTensorMapper.to_tensor(stamps).numpy()
        start = rows.stop
    if start != n:
        raise RelsslError(f"{path}: the file changed while it was read ({start} rows, then {n})")
    warn_bad_amounts(path, bad, on_bad_values)

    train_rows = np.flatnonzero(arrays["split"] == TRAIN)
    col_stats = {}
    for j, col in enumerate(num_cols):
        values = np.asarray(staged_num[train_rows, j], dtype=np.float64)
        if not np.isfinite(values).any():
            raise RelsslError(f"events: numerical column '{col}' has no value in the training split")
        col_stats[col] = numerical_stats(values)
    for j, col in enumerate(cat_cols):
        names = vocab[col].index.to_numpy(dtype=object)
        cats, cat_counts = ranked_categories(names, train_counts[col], max_categories)
        lookup = np.full(len(names), -1, dtype=np.int64)
        lookup[vocab[col].index.get_indexer(pd.Index(cats, dtype=object))] = np.arange(len(cats))
        col_stats[col] = {StatType.COUNT: (cats, cat_counts)}
        for lo in range(0, n, REMAP_ROWS):
            arrays["events.categorical"][lo:lo + REMAP_ROWS, j] = lookup[staged_cat[lo:lo + REMAP_ROWS, j]]
    for col in time_cols:
        stamps = pd.Series(pd.to_datetime(arrays["time"][train_rows], unit="s"))
        col_stats[col] = compute_col_stats(stamps, torch_frame.timestamp)
    del staged_num, staged_cat
    for name in ("staged.numerical", "staged.categorical"):
        (out / f"{name}.npy").unlink()
    for arr in arrays.values():
        arr.flush()
    meta = {
        "name": path.stem.removesuffix("_Trans"),
        "num_entities": accounts.num_entities,
        "tables": {"events": {"col_names": {"numerical": num_cols, "categorical": cat_cols, "timestamp": time_cols},
                              "col_stats": col_stats}},
    }
    return arrays, meta
