"""Reader for Amazon review JSON lines (McAuley et al. 2018: 5-core and full files, plain or .gz).

Reviewers and items are entities (two key spaces); each review is an edge reviewer -> item with
features: ``overall`` (rating, may be null), ``verified``, the review time, one categorical column
per ``style`` key (``Size:`` -> ``style:Size``), ``vote`` (helpful votes, a string like "1,234"),
``image_count`` (images cannot be fetched here; their number is kept), and the text columns
``summary`` and ``reviewText``. ``reviewerName`` stays in the event table but is no feature: it
names the reviewer, whom the graph already identifies.

The file is parsed by pyarrow in one pass. Only when that fails, or a row breaks a rule below, are
lines checked one by one, to name every bad line (1-based, counting blank lines) in the error, or
to skip exactly those lines with ``skip_bad_rows``.
"""
from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj
import torch_frame

from relssl.data.relational import RelationalData
from relssl.errors import RelsslError

TEXT_COLUMNS = ("summary", "reviewText")
# Fields with a fixed type; anything else (style's keys) is inferred, unknown fields are kept.
SCHEMA = pa.schema([
    ("overall", pa.float64()), ("verified", pa.bool_()), ("reviewTime", pa.string()),
    ("reviewerID", pa.string()), ("asin", pa.string()), ("reviewerName", pa.string()),
    ("reviewText", pa.string()), ("summary", pa.string()), ("unixReviewTime", pa.int64()),
    ("vote", pa.string()), ("image", pa.list_(pa.string())),
])
REVIEW_TIME_FORMAT = "%m %d, %Y"  # "09 4, 2015"


class BadRowsWarning(UserWarning):
    """Lines skipped under ``skip_bad_rows``: counted, never silent."""


def read_amazon_reviews(path: str | Path, skip_bad_rows: bool = False, name: str | None = None) -> RelationalData:
    path = Path(path)
    if not path.is_file():
        raise RelsslError(f"{path}: file not found (expected Amazon review JSON lines, plain or .gz)")
    raw = _read_bytes(path)
    table = _parse(raw)
    problems = _row_problems(table) if table is not None else None
    if table is None or problems.any():
        # error path: the lines of the rows the vectorised rules flagged, or every line when pyarrow
        # could not parse the file, checked one at a time for a message
        bad = _bad_lines(raw, None if table is None else np.flatnonzero(problems))
        if not bad:
            raise RelsslError(f"{path}: not Amazon review JSON lines: pyarrow could not read it, yet every "
                              f"line passes the checks; please report this file")
        if not skip_bad_rows:
            line, why = next(iter(bad.items()))
            more = f" ({len(bad) - 1} more bad line(s); --skip-bad-rows skips them)" if len(bad) > 1 else \
                " (--skip-bad-rows skips it)"
            raise RelsslError(f"{path}: line {line}: {why}{more}")
        first, why = next(iter(bad.items()))
        warnings.warn(f"{path}: skipped {len(bad)} malformed line(s) (first: line {first}: {why})",
                      BadRowsWarning, stacklevel=2)
        raw = _drop_lines(raw, np.fromiter(bad, dtype=np.int64))
        table = _parse(raw)
        if table is None or _row_problems(table).any():
            raise RelsslError(f"{path}: still unreadable after skipping {len(bad)} bad line(s)")
    if table.num_rows == 0:
        raise RelsslError(f"{path}: no reviews in the file")
    return _to_relational(table, name or path.name.split(".")[0], path)


def _read_bytes(path: Path) -> bytes:
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        return gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    except (OSError, EOFError) as err:
        raise RelsslError(f"{path}: cannot decompress: {err}") from None


def _parse(raw: bytes) -> pa.Table | None:
    """The whole buffer as one pyarrow table, or None when pyarrow rejects it."""
    if not raw.strip():
        return pa.table({f.name: pa.array([], f.type) for f in SCHEMA})
    try:
        return pj.read_json(io.BytesIO(raw), read_options=pj.ReadOptions(block_size=len(raw) + 1),
                            parse_options=pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="infer"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _vote_numbers(vote: pd.Series) -> pd.Series:
    return pd.to_numeric(vote.str.replace(",", "", regex=False).str.strip(), errors="coerce")


def _row_problems(table: pa.Table) -> np.ndarray:
    """Rows breaking the rules that ``_line_problem`` states one line at a time (vectorised)."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for key in ("reviewerID", "asin"):
        values = table[key].to_pandas().astype("string")
        bad |= (values.isna() | (values.str.len() == 0)).to_numpy()
    bad |= (table["unixReviewTime"].is_null().to_numpy(zero_copy_only=False)
            & _review_time(table).isna().to_numpy())
    vote = table["vote"].to_pandas().astype("string")
    bad |= (vote.notna() & _vote_numbers(vote).isna()).to_numpy()
    if "style" in table.column_names and not pa.types.is_struct(table["style"].type):
        bad |= table["style"].is_valid().to_numpy(zero_copy_only=False)
    return bad


def _review_time(table: pa.Table) -> pd.Series:
    return pd.to_datetime(table["reviewTime"].to_pandas(), format=REVIEW_TIME_FORMAT, errors="coerce")


def _line_problem(line: bytes) -> str | None:
    """Why one line is not a usable review, or None (the same rules as the vectorised path)."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"not valid JSON ({getattr(err, 'msg', err)})"
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    for key in ("reviewerID", "asin"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            return f"'{key}' is missing or not a non-empty string"
    types = {"overall": (int, float), "verified": (bool,), "unixReviewTime": (int,), "vote": (str,),
             "image": (list,), "style": (dict,), **{k: (str,) for k in ("reviewTime", "reviewerName", *TEXT_COLUMNS)}}
    for key, allowed in types.items():
        value = rec.get(key)
        if value is not None and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
            return f"'{key}' is {json.dumps(value)[:40]}, expected {' or '.join(t.__name__ for t in allowed)}"
    if rec.get("unixReviewTime") is None and pd.isna(pd.to_datetime(rec.get("reviewTime"), format=REVIEW_TIME_FORMAT,
                                                                     errors="coerce")):
        return "no 'unixReviewTime' and no readable 'reviewTime' (like \"09 4, 2015\")"
    if isinstance(rec.get("vote"), str) and pd.isna(_vote_numbers(pd.Series([rec["vote"]], dtype="string"))[0]):
        return f"'vote' is {rec['vote']!r}, expected a number like \"1,234\""
    if any(not isinstance(v, str) for v in (rec.get("style") or {}).values()) or \
            any(not isinstance(v, str) for v in rec.get("image") or []):
        return "'style' values and 'image' entries must be strings"
    return None


def _bad_lines(raw: bytes, rows: np.ndarray | None = None) -> dict[int, str]:
    """{line number: problem} of the bad lines among the non-blank lines ``rows`` (pyarrow skips
    blank lines, so table row i is the i-th non-blank line; None: every line), in file order."""
    lines = raw.split(b"\n")
    numbers = np.flatnonzero([bool(line.strip()) for line in lines]) + 1  # ~0.1 us a line; JSON is the cost
    bad = {}
    for number in (numbers if rows is None else numbers[rows]).tolist():
        problem = _line_problem(lines[number - 1])
        if problem:
            bad[number] = problem
    return bad


def _drop_lines(raw: bytes, numbers: np.ndarray) -> bytes:
    lines = np.array(raw.split(b"\n"), dtype=object)
    keep = np.ones(len(lines), dtype=bool)
    keep[numbers - 1] = False
    return b"\n".join(lines[keep])


def _to_relational(table: pa.Table, name: str, path: Path) -> RelationalData:
    seconds = table["unixReviewTime"].to_pandas().astype("Int64")
    missing = seconds.isna().to_numpy()
    if missing.any():  # checked: these rows have a readable reviewTime
        seconds[missing] = _review_time(table)[missing].astype("datetime64[s]").astype("int64")
    time = seconds.to_numpy(np.int64)
    events = pd.DataFrame({
        "overall": table["overall"].to_pandas(),
        "verified": table["verified"].to_pandas().map({True: "true", False: "false"}),
        "reviewTime": pd.to_datetime(time, unit="s").astype("datetime64[s]"),
        "vote": _vote_numbers(table["vote"].to_pandas().astype("string")).astype("float64"),
        "image_count": table["image"].combine_chunks().value_lengths().fill_null(0).to_numpy(
            zero_copy_only=False).astype("float64"),
    })
    stypes = {"overall": torch_frame.numerical, "verified": torch_frame.categorical,
              "reviewTime": torch_frame.timestamp, "vote": torch_frame.numerical,
              "image_count": torch_frame.numerical}
    if "style" in table.column_names:
        style = table["style"].combine_chunks()
        for field_name in style.type.names if pa.types.is_struct(style.type) else []:
            col = "style:" + field_name.strip().rstrip(":").strip()
            if col in events:
                raise RelsslError(f"{path}: style keys that differ only in spacing or a trailing ':' would share column "
                                  f"'{col}' (keys: {style.type.names})")
            values = style.field(field_name).to_pandas().astype("string").str.strip()
            events[col] = values.where(values.str.len() > 0)
            stypes[col] = torch_frame.categorical
    for col in TEXT_COLUMNS:
        events[col] = table[col].to_pandas().astype("string")
        stypes[col] = torch_frame.text_embedded
    events["reviewerID"] = table["reviewerID"].to_pandas().astype("string")
    events["asin"] = table["asin"].to_pandas().astype("string")
    events["reviewerName"] = table["reviewerName"].to_pandas().astype("string")
    users, user_keys = pd.factorize(events["reviewerID"])
    items, item_keys = pd.factorize(events["asin"])
    entity_keys = pd.concat([pd.DataFrame({"entity": "user", "reviewerID": pd.Series(user_keys, dtype="string")}),
                             pd.DataFrame({"entity": "item", "asin": pd.Series(item_keys, dtype="string")})],
                            ignore_index=True)
    return RelationalData(
        name=name, events=events, col_stypes=stypes, time_col="reviewTime", time=time,
        src=users.astype(np.int64), dst=(items + len(user_keys)).astype(np.int64),
        num_entities=len(user_keys) + len(item_keys), entity_keys=entity_keys,
        transforms={"vote": "log1p"},
    )
