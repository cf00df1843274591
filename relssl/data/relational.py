"""The one in-memory form every reader produces: an event table whose rows link entities."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch_frame

from relssl.errors import RelsslError


@dataclass
class RelationalData:
    """Events (rows) with typed feature columns, optionally linking a source and a target entity.

    Each event row is one directed edge ``src[i] -> dst[i]`` of a multigraph over entities
    ``0 .. num_entities-1``. Without keys (``src is None``) the data is a single table.
    Label columns stay in ``events`` but are never features. Text columns (stype
    ``text_embedded``) hold raw strings in ``events`` and are embedded when encoding; embedding
    columns (stype ``embedding``) hold their [num_events, dim] vectors in ``vectors``, zero for
    missing.
    """

    name: str
    events: pd.DataFrame
    col_stypes: dict[str, torch_frame.stype]
    label_cols: list[str] = field(default_factory=list)
    time_col: str | None = None
    time: np.ndarray | None = None  # int64 seconds since the Unix epoch, one per event
    src: np.ndarray | None = None  # int64 entity id of each event's source
    dst: np.ndarray | None = None  # int64 entity id of each event's target
    num_entities: int = 0
    # Row i: the original key values of entity i, one column per key column; with two entity
    # types (users and items) an ``entity`` column names its type and the other type's key columns are null.
    entity_keys: pd.DataFrame | None = None
    entities: pd.DataFrame | None = None  # row i: features/labels of entity i
    entity_col_stypes: dict[str, torch_frame.stype] = field(default_factory=dict)
    entity_label_cols: list[str] = field(default_factory=list)
    transforms: dict[str, str] = field(default_factory=dict)  # column -> "log1p", applied when encoding
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # embedding column -> [num_events, dim]
    mask_groups: list[list[str]] = field(default_factory=list)  # event columns masked together (masking.py)

    def __post_init__(self) -> None:
        n = len(self.events)
        if n == 0:
            raise RelsslError(f"dataset '{self.name}': the event table has no rows")
        missing = [c for c in [*self.col_stypes, *self.label_cols]
                   if c not in self.events and not (c in self.vectors and self.col_stypes.get(c) == torch_frame.embedding)]
        if missing:
            raise RelsslError(f"dataset '{self.name}': columns {missing} are not in the event table")
        leaked = set(self.label_cols) & set(self.col_stypes)
        if leaked:
            raise RelsslError(f"dataset '{self.name}': label columns {sorted(leaked)} cannot be features")
        for col, vec in self.vectors.items():
            if self.col_stypes.get(col) != torch_frame.embedding:
                raise RelsslError(f"dataset '{self.name}': vectors given for '{col}', which is not an embedding column")
            if vec.ndim != 2 or len(vec) != n:
                raise RelsslError(f"dataset '{self.name}': embedding column '{col}' has shape {vec.shape} for {n} events")
        unfilled = [c for c, s in self.col_stypes.items() if s == torch_frame.embedding and c not in self.vectors]
        if unfilled:
            raise RelsslError(f"dataset '{self.name}': embedding columns {unfilled} have no vectors")
        for arr_name in ("time", "src", "dst"):
            arr = getattr(self, arr_name)
            if arr is not None and len(arr) != n:
                raise RelsslError(f"dataset '{self.name}': '{arr_name}' has {len(arr)} values for {n} events")
        if (self.src is None) != (self.dst is None):
            raise RelsslError(f"dataset '{self.name}': give both source and target keys, or neither")
        if self.src is not None:
            hi = max(int(self.src.max()), int(self.dst.max()))
            if min(int(self.src.min()), int(self.dst.min())) < 0 or hi >= self.num_entities:
                raise RelsslError(f"dataset '{self.name}': entity ids must lie in [0, {self.num_entities})")
        if self.entities is not None and len(self.entities) != self.num_entities:
            raise RelsslError(
                f"dataset '{self.name}': entity table has {len(self.entities)} rows for "
                f"{self.num_entities} entities"
            )

    @property
    def has_graph(self) -> bool:
        return self.src is not None

    @property
    def num_events(self) -> int:
        return len(self.events)


def parse_mask_groups(spec: str | list, columns: list[str], where: str) -> list[list[str]]:
    """``'A+B;C+D'`` (or ``[[A, B], [C, D]]``) -> groups of column names, each of two or more
    known columns, no column in two groups; one clear error naming ``where`` otherwise."""
    groups = ([[c.strip() for c in g.split("+")] for g in spec.split(";") if g.strip()] if isinstance(spec, str)
              else [list(g) if isinstance(g, (list, tuple)) else [g] for g in spec])
    seen: set[str] = set()
    for group in groups:
        unknown = [c for c in group if c not in columns]
        if unknown or len(group) < 2 or seen & set(group):
            raise RelsslError(f"{where} {spec!r}: expected groups of two or more distinct feature columns like "
                              f"'A+B;C+D' (columns: {', '.join(columns)})")
        seen |= set(group)
    return groups
