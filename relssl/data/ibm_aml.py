"""Reader for IBM AMLworld transaction files (Kaggle ``HI-Small_Trans.csv`` etc.), taken unchanged.

The files repeat the header name ``Account`` and write bank ids with leading zeros ("010",
"03208"), so the header is checked by hand and every column is read with an explicit name and
type: a default CSV reader would rename one ``Account`` silently and turn "010" into 10.
"""
from __future__ import annotations

import gzip
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq
from torch_frame import stype

from relssl.data.relational import RelationalData
from relssl.data.values import bad_numbers, check_policy, why
from relssl.errors import RelsslError

HEADER = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
    "Amount Paid,Payment Currency,Payment Format,Is Laundering"
)
# Unique names for the columns of HEADER (the second ``Account`` becomes ``Account.1``, as in pandas).
COLUMNS = [
    "Timestamp", "From Bank", "Account", "To Bank", "Account.1", "Amount Received",
    "Receiving Currency", "Amount Paid", "Payment Currency", "Payment Format", "Is Laundering",
]
TIME_FORMAT = "%Y/%m/%d %H:%M"
KEY_COLUMNS = ["From Bank", "Account", "To Bank", "Account.1"]
_TYPES = {
    "Timestamp": pa.timestamp("s"),
    **{c: pa.string() for c in KEY_COLUMNS},
    "Amount Received": pa.float64(),
    "Receiving Currency": pa.string(),
    "Amount Paid": pa.float64(),
    "Payment Currency": pa.string(),
    "Payment Format": pa.string(),
    "Is Laundering": pa.int64(),
}
_EXPECTED = {
    "Timestamp": "a timestamp YYYY/MM/DD HH:MM",
    "Amount Received": "a number",
    "Amount Paid": "a number",
    "Is Laundering": "0 or 1",
}
COL_STYPES = {
    "Timestamp": stype.timestamp,
    "From Bank": stype.categorical,
    "To Bank": stype.categorical,
    "Amount Received": stype.numerical,
    "Receiving Currency": stype.categorical,
    "Amount Paid": stype.numerical,
    "Payment Currency": stype.categorical,
    "Payment Format": stype.categorical,
}

TRANSFORMS = {"Amount Received": "log1p", "Amount Paid": "log1p"}


def read_ibm_aml(path: str | Path, on_bad_values: str = "error") -> RelationalData:
    """Load an AMLworld ``*_Trans.csv``: accounts (bank, account) are entities, transactions are edges."""
    path = Path(path)
    _check_header(path)
    if path.suffix == ".parquet":
        table = read_ibm_rows(parquet_as_csv(path), path, on_bad_values=on_bad_values)
    else:
        table = read_ibm_rows(path, path, skip_rows=1, on_bad_values=on_bad_values)
    if table.num_rows == 0:
        raise RelsslError(f"{path}: the file has a header but no transaction rows"
                          + (" it can use (every one held a bad amount)" if on_bad_values == "drop" else ""))

    events = table.to_pandas()
    accounts = AccountIds()
    src, dst = accounts(table)
    return RelationalData(
        name=path.stem.removesuffix("_Trans"),
        events=events,
        col_stypes=dict(COL_STYPES),
        label_cols=["Is Laundering"],
        time_col="Timestamp",
        time=pc.cast(table["Timestamp"], pa.int64()).to_numpy(),  # timestamp[s] -> epoch seconds
        src=src,
        dst=dst,
        num_entities=accounts.num_entities,
        entity_keys=accounts.keys(),
        transforms=dict(TRANSFORMS),
    )


def parquet_as_csv(path: Path) -> io.BytesIO:
    """A Parquet copy of an AMLworld file (columns named as the CSV's, or as ``COLUMNS``) as the
    CSV rows it holds, so that one parser types and checks both (a timestamp column is written in
    the CSV's own format)."""
    table = pq.read_table(path)
    table = table.rename_columns(COLUMNS)
    if pa.types.is_timestamp(table.schema.field("Timestamp").type):
        table = table.set_column(0, "Timestamp", pc.strftime(table["Timestamp"], format=TIME_FORMAT))
    out = io.BytesIO()
    pv.write_csv(table, out, write_options=pv.WriteOptions(include_header=False))
    out.seek(0)
    return out


def read_ibm_rows(source: Path | io.BytesIO, file: Path, skip_rows: int = 0, on_bad_values: str = "error") -> pa.Table:
    """Parse header-less AMLworld CSV rows into typed columns named ``COLUMNS``; errors name ``file``."""
    read_options = pv.ReadOptions(column_names=COLUMNS, skip_rows=skip_rows, block_size=16 << 20)
    convert_options = pv.ConvertOptions(
        column_types=_TYPES, timestamp_parsers=[TIME_FORMAT], null_values=[], strings_can_be_null=False
    )
    try:
        table = pv.read_csv(source, read_options=read_options, convert_options=convert_options)
    except pa.ArrowInvalid as exc:
        raise _conversion_error(exc, source, file, skip_rows) from None
    table, bad = _check_values(table, file, on_bad_values)
    warn_bad_amounts(file, bad, on_bad_values)
    return table


def _check_header(path: Path) -> None:
    """Compare the first line (a Parquet file: its column names) with the exact AMLworld header,
    naming what is missing or unexpected."""
    if not path.is_file():
        raise RelsslError(f"{path}: file not found (expected an IBM AMLworld *_Trans.csv file)")
    if path.suffix == ".parquet":
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError):
            raise RelsslError(f"{path}: not a readable Parquet file") from None
        line = ",".join("Account" if n == "Account.1" else n for n in names)  # pandas' name of the second
    else:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            try:
                first = f.readline()
            except (OSError, EOFError):  # gzip.BadGzipFile is an OSError
                raise RelsslError(f"{path}: not a readable gzip file") from None
        line = first.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")
    if not line:
        raise RelsslError(f"{path}: the file is empty; expected the header line: {HEADER}")
    if line == HEADER:
        return
    found, expected = line.split(","), HEADER.split(",")
    missing = [c for c in dict.fromkeys(expected) if found.count(c) < expected.count(c)]
    unexpected = [c for c in dict.fromkeys(found) if found.count(c) > expected.count(c)]
    problem = "; ".join(
        part
        for part in (
            f"missing column(s) {missing}" if missing else "",
            f"unexpected column(s) {unexpected}" if unexpected else "",
        )
        if part
    ) or "columns are in the wrong order"
    raise RelsslError(f"{path}: header does not match IBM AMLworld: {problem}; expected header: {HEADER}")


def _conversion_error(exc: pa.ArrowInvalid, source, file: Path, skip_rows: int) -> RelsslError:
    """Turn pyarrow's message ("In CSV column #5: ... invalid value 'x'") into one naming column and line."""
    message = str(exc)
    found = re.search(r"column #(\d+): .*invalid value '(.*)'", message)
    if not found:
        return RelsslError(f"{file}: not a valid IBM AMLworld transactions file: {message}")
    column, value = COLUMNS[int(found.group(1))], found.group(2)
    where = _line_of(source, column, value, skip_rows)
    expected = _EXPECTED.get(column, "a value")
    return RelsslError(f"{file}: column '{column}'{where}: cannot read {value!r} as {expected}")


def _line_of(source, column: str, value: str, skip_rows: int) -> str:
    """Re-read one column as text to find the file line of a bad value (error path only)."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    text = pv.read_csv(
        source,
        read_options=pv.ReadOptions(column_names=COLUMNS, skip_rows=skip_rows),
        convert_options=pv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}),
    )[column]
    index = pc.index(text, value).as_py()
    return f" (line {index + skip_rows + 1})" if index >= 0 else ""


AMOUNTS = ("Amount Received", "Amount Paid")


def bad_amounts(table: pa.Table | pa.RecordBatch) -> dict[str, np.ndarray]:
    """Each amount column's bad rows (relssl.data.values: NaN or inf; every other float64 is usable)."""
    rows = np.ones(table.num_rows, dtype=bool)
    return {c: bad_numbers(table[c].to_numpy(zero_copy_only=False), rows, TRANSFORMS[c]) for c in AMOUNTS}


def _check_values(table: pa.Table, file: Path, on_bad_values: str = "error", first_row: int = 0) -> tuple[pa.Table, int]:
    """Reject empty keys and labels other than 0/1, which would silently corrupt the graph or the
    target; bad amounts go by ``on_bad_values`` (relssl.data.values). ``first_row``: the data row
    of the table's first (a chunk's). Returns the table and how many rows held a bad amount."""
    for column in KEY_COLUMNS:
        if table.num_rows and pc.min(pc.utf8_length(table[column])).as_py() == 0:
            raise RelsslError(f"{file}: column '{column}' has an empty value; every row needs a bank and account")
    labels = table["Is Laundering"]
    if table.num_rows and not pc.all(pc.is_in(labels, pa.array([0, 1]))).as_py():
        raise RelsslError(f"{file}: column 'Is Laundering' must hold only 0 or 1")
    check_policy(on_bad_values)
    bad = bad_amounts(table)
    rows = np.logical_or.reduce(list(bad.values()))
    if not rows.any():
        return table, 0
    if on_bad_values == "error":
        column = next(c for c in AMOUNTS if bad[c].any())
        row = int(np.argmax(bad[column]))
        value = table[column][row].as_py()
        raise RelsslError(f"{file}: column '{column}' holds {value} in data row {first_row + row + 1}: "
                          f"{why(value)}; or pass --on-bad-values drop or missing")
    if on_bad_values == "drop":
        return table.filter(pa.array(~rows)), int(rows.sum())
    for column in AMOUNTS:  # missing: the encoder fills them as it fills any missing number
        values = np.where(bad[column], np.nan, table[column].to_numpy(zero_copy_only=False))
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.float64()))
    return table, int(rows.sum())


def warn_bad_amounts(file: Path, count: int, on_bad_values: str) -> None:
    if count:
        warnings.warn(f"{file}: {count:,} row(s) with a bad amount "
                      f"{'dropped' if on_bad_values == 'drop' else 'read as missing'} (--on-bad-values {on_bad_values})")


class FirstSeenIds:
    """Ids 0, 1, ... in order of first appearance, kept across calls: reading a file in chunks
    gives the same ids as reading it at once."""

    def __init__(self, dtype=object):
        self.index = pd.Index([], dtype=dtype)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        codes, uniques = pd.factorize(values)
        ids = self.index.get_indexer(uniques)
        new = ids < 0
        ids[new] = len(self.index) + np.arange(int(new.sum()))
        self.index = self.index.append(pd.Index(uniques[new], dtype=self.index.dtype))
        return ids.astype(np.int64)[codes]


class AccountIds:
    """Entity ids for (bank, account) pairs, numbered by first appearance with each row's source
    before its target (row order, so chunk boundaries do not change the numbering)."""

    def __init__(self):
        self.banks, self.accounts, self.pairs = FirstSeenIds(), FirstSeenIds(), FirstSeenIds(np.int64)

    def __call__(self, table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        def interleave(a: str, b: str) -> np.ndarray:
            both = np.stack([table[a].to_numpy(zero_copy_only=False), table[b].to_numpy(zero_copy_only=False)], 1)
            return both.reshape(-1)

        pair = (self.banks(interleave("From Bank", "To Bank")) << 32) | self.accounts(interleave("Account", "Account.1"))
        ids = self.pairs(pair)
        return ids[0::2], ids[1::2]

    @property
    def num_entities(self) -> int:
        return len(self.pairs.index)

    def keys(self) -> pd.DataFrame:
        pair = self.pairs.index.to_numpy()
        return pd.DataFrame({"bank": pd.Series(self.banks.index.take(pair >> 32)),
                             "account": pd.Series(self.accounts.index.take(pair & 0xFFFFFFFF))})
