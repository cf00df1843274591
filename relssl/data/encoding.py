"""Turn a table into a pytorch-frame TensorFrame, with statistics fitted on training rows only."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch_frame
from torch_frame.data.stats import StatType, compute_col_stats

from relssl.errors import RelsslError

# The stypes relssl encodes; text and embedding columns arrive as 'embedding' vectors.
SUPPORTED_STYPES = {
    torch_frame.numerical,
    torch_frame.categorical,
    torch_frame.timestamp,
    torch_frame.embedding,
}
TRANSFORMS = {"log1p": lambda s: np.sign(s) * np.log1p(np.abs(s))}


@dataclass(frozen=True)
class ColumnInfo:
    """Where a column lives in the TensorFrame and what its training statistics are."""

    name: str
    stype: torch_frame.stype
    index: int  # position within tf.feat_dict[stype]
    num_categories: int = 0  # categorical: size of the training vocabulary
    mean: float = 0.0  # numerical: training mean / std (after any transform)
    std: float = 1.0

    @property
    def maskable(self) -> bool:
        """Cells a masking pretext task can hide and ask the model to predict."""
        return self.stype == torch_frame.numerical or (
            self.stype == torch_frame.categorical and self.num_categories > 0
        )


@dataclass
class EncodedTable:
    tf: torch_frame.TensorFrame
    col_stats: dict
    columns: list[ColumnInfo]  # in the column order of the stype-wise encoder's output

    @property
    def maskable_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.maskable]


def encode_table(
    df: pd.DataFrame,
    col_stypes: dict[str, torch_frame.stype],
    train_rows: np.ndarray,
    transforms: dict[str, str] | None = None,
    max_categories: int = 1000,
    table: str = "events",
) -> EncodedTable:
    """Encode ``df[col_stypes]``; statistics and vocabularies come from ``train_rows`` alone.

    Categories unseen in training (or beyond the ``max_categories`` most frequent) map to the
    unknown index -1, which the encoder embeds as a learned-free zero vector.
    """
    with warnings.catch_warnings():  # pytorch-frame wraps read-only numpy views; it never writes to them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return _encode_table(df, col_stypes, train_rows, transforms or {}, max_categories, table)


def _encode_table(df, col_stypes, train_rows, transforms, max_categories, table) -> EncodedTable:
    frame = pd.DataFrame(index=df.index)
    for col, stype in col_stypes.items():
        if stype not in SUPPORTED_STYPES:
            raise RelsslError(f"{table}: column '{col}' has stype '{stype.value}', which is not supported yet")
        ser = df[col]
        if stype == torch_frame.numerical:
            ser = pd.to_numeric(ser, errors="coerce").astype("float64")
            if col in transforms:
                if transforms[col] not in TRANSFORMS:
                    raise RelsslError(f"{table}: column '{col}': unknown transform '{transforms[col]}' "
                                      f"(expected one of {sorted(TRANSFORMS)})")
                ser = TRANSFORMS[transforms[col]](ser)
        elif stype == torch_frame.categorical:
            ser = ser.astype("string").astype(object).where(ser.notna(), None)
        frame[col] = ser
    train = frame.iloc[train_rows]
    col_stats = {}
    for col, stype in col_stypes.items():
        if stype == torch_frame.numerical and train[col].notna().sum() == 0:
            raise RelsslError(f"{table}: numerical column '{col}' has no value in the training split")
        if stype == torch_frame.categorical:
            counts = train[col].value_counts(sort=False)
            stats = {StatType.COUNT: ranked_categories(counts.index.to_numpy(dtype=object), counts.to_numpy(),
                                                       max_categories)}
        else:
            stats = compute_col_stats(train[col], stype)
        col_stats[col] = stats
    dataset = torch_frame.data.Dataset(frame, col_to_stype=dict(col_stypes))
    dataset.materialize(col_stats=col_stats)
    tf = dataset.tensor_frame
    return EncodedTable(tf=tf, col_stats=col_stats, columns=column_infos(tf, col_stats))


def ranked_categories(names: np.ndarray, counts: np.ndarray, max_categories: int) -> tuple[list, list]:
    """The vocabulary: the ``max_categories`` most frequent categories, ties broken by name.

    pytorch-frame's own ranking breaks ties by the order rows were read, which would make a
    vocabulary depend on how a file was chunked; sorting by (count desc, name) does not.
    """
    keep = counts > 0
    names, counts = names[keep], counts[keep]
    order = pd.DataFrame({"n": -counts, "c": names.astype(str)}).sort_values(["n", "c"], kind="stable").index
    order = order.to_numpy()[:max_categories]
    return names[order].tolist(), counts[order].astype(np.int64).tolist()


def column_infos(tf: torch_frame.TensorFrame, col_stats: dict) -> list[ColumnInfo]:
    """Each column's place in ``tf`` and its training statistics, in the encoder's output order."""
    columns = []
    for stype in tf.stypes:
        for j, col in enumerate(tf.col_names_dict[stype]):
            stats = col_stats[col]
            info = ColumnInfo(col, stype, j)
            if stype == torch_frame.categorical:
                info = ColumnInfo(col, stype, j, num_categories=len(stats[StatType.COUNT][0]))
            elif stype == torch_frame.numerical:
                std = float(stats[StatType.STD])
                info = ColumnInfo(col, stype, j, mean=float(stats[StatType.MEAN]), std=std if std > 0 else 1.0)
            columns.append(info)
    return columns


def category_counts(enc: EncodedTable, col: ColumnInfo) -> torch.Tensor:
    """Training frequency of each category index of a categorical column."""
    return torch.tensor(enc.col_stats[col.name][StatType.COUNT][1], dtype=torch.float64)
