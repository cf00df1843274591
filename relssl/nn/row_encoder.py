"""Encoders of table rows: stype-wise cell embeddings, then an FT-Transformer or a flat projection."""
from __future__ import annotations

import torch
from torch import Tensor, nn
import torch_frame
from torch_frame import NAStrategy, TensorFrame
from torch_frame.nn import (EmbeddingEncoder, FTTransformerConvs, LinearEmbeddingEncoder, LinearEncoder,
                            StypeWiseFeatureEncoder, TimestampEncoder)

from relssl.data.encoding import EncodedTable


def column_encoder(enc: EncodedTable, channels: int) -> StypeWiseFeatureEncoder:
    """One embedding per cell: categories by lookup (unknown -> zero vector), numbers by a
    per-column linear map of the standardised value (missing -> training mean), timestamps by
    positional/cyclic features, text and embedding vectors by a per-column linear projection (a
    missing vector is zero, so it becomes the column's bias: a learned 'missing' token)."""
    encoders = {
        torch_frame.categorical: EmbeddingEncoder(),
        torch_frame.numerical: LinearEncoder(na_strategy=NAStrategy.MEAN),
        torch_frame.timestamp: TimestampEncoder(),
        torch_frame.embedding: LinearEmbeddingEncoder(),
    }
    return StypeWiseFeatureEncoder(
        out_channels=channels,
        col_stats=enc.col_stats,
        col_names_dict=enc.tf.col_names_dict,
        stype_encoder_dict={s: e for s, e in encoders.items() if s in enc.tf.col_names_dict},
    )


class RowEncoder(nn.Module):
    """FT-Transformer over a row's cells. Cells flagged in ``remove`` are shown as a learned
    per-column [MASK] embedding instead of their value (the 'remove' mask type)."""

    def __init__(self, enc: EncodedTable, channels: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.cells = column_encoder(enc, channels)
        self.mask_token = nn.Parameter(torch.randn(len(enc.columns), channels) * 0.02)
        self.transformer = FTTransformerConvs(channels, num_layers=layers, nhead=heads, dropout=dropout)

    def forward(self, tf: TensorFrame, remove: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, _ = self.cells(tf)
        if remove is not None:
            x = torch.where(remove.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        tokens, cls = self.transformer(x)
        return tokens, cls


class FlatRowEncoder(nn.Module):
    """A cheap row embedding for the many neighbour rows of a sampled subgraph, where an
    FT-Transformer per row would dominate the cost: the sum of the row's (column-specific) cell
    embeddings, then one linear layer. Summing before the projection costs C times less than
    projecting the concatenated cells, which matters at tens of thousands of rows per batch."""

    def __init__(self, cells: StypeWiseFeatureEncoder, channels: int):
        super().__init__()
        self.cells = cells
        self.proj = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.LayerNorm(channels))

    def forward(self, tf: TensorFrame) -> Tensor:
        x, _ = self.cells(tf)
        return self.proj(x.sum(1))
