"""Bad numbers in numerical columns, and what ``--on-bad-values`` does with them.

A bad value is text that is not a number, ±inf, or a number beyond float32 where no transform
shrinks it (the encoder stores float32: it would become inf). (``NaN`` written in a CSV is read
as missing by pyarrow, as an empty cell is; the IBM AML reader, which has no missing values,
counts a NaN amount as bad.) Left in, any of
them turns the column's statistics and every loss into NaN, or turns silently into a missing cell. ``error`` (the default) stops at the first, naming the file, column
and row; ``drop`` removes the rows holding one; ``missing`` reads each as an empty cell. Both of
the latter warn with the count. An empty cell is missing, never bad.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from relssl.errors import RelsslError

ON_BAD_VALUES = ("error", "drop", "missing")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_policy(policy: str) -> None:
    if policy not in ON_BAD_VALUES:
        raise RelsslError(f"--on-bad-values {policy}: expected one of {', '.join(ON_BAD_VALUES)}")


def bad_numbers(values: np.ndarray, present: np.ndarray, transform: str | None = None) -> np.ndarray:
    """Rows whose float64 ``values`` are bad; ``present``: rows with a cell (NaN there was not a number)."""
    bad = (np.isnan(values) & present) | np.isinf(values)
    if transform is None:  # a transform shrinks what it takes (relssl.data.encoding: log1p of 1e300 is 691)
        bad |= np.abs(values) > FLOAT32_MAX
    return bad


def shown(value) -> str:
    """A cell as its file shows it: text quoted, numbers plain (not numpy's repr)."""
    return repr(value) if isinstance(value, str) else str(value.item() if hasattr(value, "item") else value)


def why(value: float) -> str:
    if np.isnan(value):
        return "not a number (declare the column categorical or text if it holds words)"
    if np.isinf(value):
        return "not a finite number"
    return "beyond float32's range"


def clean_numerical(df: pd.DataFrame, columns: list[str], where: str, policy: str,
                    transforms: dict[str, str] | None = None) -> pd.DataFrame:
    """``df`` with each of ``columns`` numeric (text read as float64) and its bad values handled by
    ``policy``; ``where`` names the file in messages. Rows keep their order."""
    check_policy(policy)
    transforms = transforms or {}
    drop = np.zeros(len(df), dtype=bool)
    for col in columns:
        raw = df[col]
        if pd.api.types.is_bool_dtype(raw) or (pd.api.types.is_integer_dtype(raw) and col not in transforms):
            continue  # every value usable; an integer column stays one (it may also be a key or a time part)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = bad_numbers(values, raw.notna().to_numpy(), transforms.get(col))
        if not bad.any() and pd.api.types.is_numeric_dtype(raw):
            continue
        if bad.any():
            row = int(np.argmax(bad))
            if policy == "error":
                raise RelsslError(f"{where}: numerical column '{col}' holds {shown(raw.iloc[row])} in row {row}: "
                                  f"{why(values[row])}; or pass --on-bad-values drop or missing")
            warnings.warn(f"{where}: column '{col}': {int(bad.sum()):,} bad value(s) (first {shown(raw.iloc[row])} in row "
                          f"{row}) {'dropped with their rows' if policy == 'drop' else 'read as missing'} "
                          f"(--on-bad-values {policy})")
            if policy == "drop":
                drop |= bad
            values = np.where(bad, np.nan, values)
        df[col] = values
    return df[~drop].reset_index(drop=True) if drop.any() else df
