"""From RelationalData to tensors ready for training: split by time, encode with training stats."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from relssl.data.encoding import EncodedTable, encode_table
from relssl.data.relational import RelationalData
from relssl.data.splits import TRAIN, temporal_split


@dataclass
class PreparedData:
    data: RelationalData | None  # the source tables; None when loaded from the cache (training needs none)
    split: np.ndarray  # int8 per event: 0 train, 1 val, 2 test
    events: EncodedTable
    entities: EncodedTable | None
    src: torch.Tensor | None
    dst: torch.Tensor | None
    time: torch.Tensor | None
    num_entities: int = 0
    mask_groups: list[list[str]] = field(default_factory=list)  # columns masked together (RelationalData)

    def rows(self, split: int) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(self.split == split))

    @property
    def has_graph(self) -> bool:
        return self.src is not None


def prepare(data: RelationalData, fractions=(0.6, 0.2, 0.2), seed: int = 0,
            max_categories: int = 1000, text=None) -> PreparedData:
    """Split events by time and encode them; entity features are fitted on entities that appear
    in training events (an entity's own row carries no time, so this is the leakage-safe set).
    ``text`` embeds text columns (a ``relssl.data.text.TextEmbedder``; default: offline MiniLM, cached)."""
    split = temporal_split(data.time, data.num_events, fractions, seed)
    train_rows = np.flatnonzero(split == TRAIN)
    events = encode_table(data.events, data.col_stypes, train_rows, data.transforms, max_categories, "events",
                          data.vectors, text)
    entities = None
    if data.entities is not None and data.entity_col_stypes:
        seen = np.unique(np.concatenate([data.src[train_rows], data.dst[train_rows]]))
        entities = encode_table(data.entities, data.entity_col_stypes, seen, {}, max_categories, "entities",
                                text=text)

    def as_tensor(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return PreparedData(data, split, events, entities, as_tensor(data.src), as_tensor(data.dst),
                        as_tensor(data.time), data.num_entities, data.mask_groups)
