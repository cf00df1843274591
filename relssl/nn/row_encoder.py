"""Encoders of table rows: stype-wise cell embeddings, then an FT-Transformer, a dense MLP or ResNet,
or (for the many neighbour rows of a graph) a flat projection."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
import torch_frame
from torch_frame import NAStrategy, TensorFrame
from torch_frame.nn import (EmbeddingEncoder, FTTransformerConvs, LinearEmbeddingEncoder, LinearEncoder,
                            StypeWiseFeatureEncoder, TimestampEncoder)
from torch_frame.nn.models.resnet import FCResidualBlock

from relssl.data.encoding import EncodedTable
from relssl.errors import RelsslError


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
        return ft_transformer(self.transformer, x)


def ft_transformer(convs: FTTransformerConvs, x: Tensor) -> tuple[Tensor, Tensor]:
    """pytorch-frame's FTTransformerConvs on ``x`` [B, cells, channels] with its own weights and in
    its own order of operations (a [CLS] token, post-norm encoder layers, a final norm), attention
    written out: nn.MultiheadAttention's backward stacks the query/key/value gradients and copies
    them back into its packed layout (`_PackedQKV` multiplies them where they lie), and it runs
    the output projection cells-major, which costs a transposing copy each way. That order is kept
    only where dropout draws a mask over the projection's output (in memory order), so the masks are
    the module's; values and gradients match it to float rounding (tested)."""
    batch, length, width = x.shape[0], x.shape[1] + 1, x.shape[2]
    x = torch.cat([convs.cls_embedding.expand(batch, 1, -1), x], dim=1)  # bf16 cells promote to fp32, as there
    for layer in convs.transformer.layers:
        assert not layer.norm_first, "pytorch-frame's layers are post-norm"
        attention = layer.self_attn
        dropout = attention.dropout if layer.training else 0.0
        q, k, v = _PackedQKV.apply(x, attention.in_proj_weight, attention.in_proj_bias, attention.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # [B, heads, cells, width/heads]
        if layer.dropout1.training and layer.dropout1.p:  # cells-major, as the module: its mask's order
            out = F.linear(out.permute(2, 0, 1, 3).reshape(length, batch, width), attention.out_proj.weight,
                           attention.out_proj.bias).transpose(0, 1)
        else:  # batch-major: torch's CPU flash kernel writes [B, cells, heads, width/heads], a view here
            out = F.linear(out.transpose(1, 2).reshape(batch, length, width), attention.out_proj.weight,
                           attention.out_proj.bias)
        x = layer.norm1(x + layer.dropout1(out))
        x = layer.norm2(x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))))
    row, cells = convs.transformer.norm(x).split([1, length - 1], dim=1)  # backward: one cat, no zero-filled grads
    return cells, row.squeeze(1)


class _PackedQKV(torch.autograd.Function):
    """The packed query/key/value projection of ``x`` [B, cells, width], returned as three views
    [B, heads, cells, width/heads] of its output. autograd's own backward of that split stacks the
    three gradients and transposes them back into the packed layout, a cat and two full copies a
    layer (a third of a CPU FT-Transformer step); here each gradient is multiplied where it lies
    (torch's CPU flash attention returns it in [B, cells, heads, width/heads] memory, a free reshape;
    other kernels' layouts cost one copy)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, heads: int):
        qkv = F.linear(x, weight, bias)  # under autocast in its dtype: the backward computes in the same
        ctx.save_for_backward(x.to(qkv.dtype), weight.to(qkv.dtype))  # (autograd casts the gradients back)
        batch, length, width = x.shape
        return qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        batch, length, width = x.shape
        x = x.reshape(batch * length, width)
        grad_x = None
        grad_weight = torch.empty_like(weight) if need_weight else None
        grad_bias = weight.new_empty(3 * width) if need_bias else None
        for part, grad in enumerate(grads):
            grad = grad.to(x.dtype).transpose(1, 2).reshape(batch * length, width)
            rows = slice(part * width, (part + 1) * width)
            if need_x:
                grad_x = grad @ weight[rows] if grad_x is None else grad_x.addmm_(grad, weight[rows])
            if need_weight:
                torch.mm(grad.t(), x, out=grad_weight[rows])
            if need_bias:
                torch.sum(grad, 0, out=grad_bias[rows])
        return grad_x.view(batch, length, width) if need_x else None, grad_weight, grad_bias, None


class DenseRowEncoder(nn.Module):
    """A row as its cells' embeddings side by side, through an MLP (``residual=False``) or
    pytorch-frame's ResNet blocks: one matrix product per layer instead of attention over every
    pair of cells, the light encoder of a wide table without a graph. Its cell tokens are the cell
    embeddings themselves ([MASK] where removed): a head predicting a cell reads the cell's column
    from its token and the row from the encoding beside it (relssl.objectives.base.cell_features)."""

    def __init__(self, enc: EncodedTable, channels: int, layers: int, dropout: float, residual: bool):
        super().__init__()
        self.cells = column_encoder(enc, channels)
        self.mask_token = nn.Parameter(torch.randn(len(enc.columns), channels) * 0.02)
        width = len(enc.columns) * channels
        hidden = 4 * channels
        if residual:
            blocks = [FCResidualBlock(width if i == 0 else hidden, hidden, dropout_prob=dropout)
                      for i in range(layers)]
        else:
            blocks = [nn.Sequential(nn.Linear(width if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                                    nn.Dropout(dropout)) for i in range(layers)]
        self.body = nn.Sequential(*blocks, nn.Linear(hidden, channels))

    def forward(self, tf: TensorFrame, remove: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, _ = self.cells(tf)
        if remove is not None:
            x = torch.where(remove.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return x, self.body(x.flatten(1))


ROW_ENCODERS = ("ft-transformer", "mlp", "resnet")


def check_row_encoder(kind: str, layers: int) -> None:
    if kind not in ROW_ENCODERS:
        raise RelsslError(f"--row-encoder {kind}: expected one of {', '.join(ROW_ENCODERS)}")
    if kind != "ft-transformer" and layers < 1:
        raise RelsslError(f"--row-layers {layers}: --row-encoder {kind} needs at least one block")


def make_row_encoder(kind: str, enc: EncodedTable, channels: int, layers: int, heads: int,
                dropout: float) -> RowEncoder | DenseRowEncoder:
    """``--row-encoder``: the FT-Transformer (every cell attends to every other), or a dense MLP or
    ResNet over the concatenated cells (``layers`` blocks of width 4 x channels)."""
    check_row_encoder(kind, layers)
    if kind == "ft-transformer":
        return RowEncoder(enc, channels, layers, heads, dropout)
    return DenseRowEncoder(enc, channels, layers, dropout, residual=kind == "resnet")


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
        summed = [summed_cells(self.cells.encoder_dict[stype.value], tf.feat_dict[stype]) for stype in tf.stypes]
        return self.proj(sum(summed[1:], summed[0]))  # autocast: numbers in bf16, categories in fp32


def embedding_rows(weight: Tensor, index: Tensor) -> Tensor:
    """``weight[index]`` ([N, width], ``index`` [N]) as ``F.embedding`` gives it. On CPU by
    ``index_select``, whose backward (an index_add) is 3x faster than embedding's at a batch's
    tens of thousands of indices (1.46 -> 0.48 ms at 26,000 edges' directions, 2 threads). On
    CUDA ``F.embedding``, whose backward sums by sorting, not by atomics."""
    if index.device.type != "cpu":
        return F.embedding(index, weight)
    return weight.index_select(0, index)


def summed_embedding_rows(weight: Tensor, index: Tensor, padding_idx: int | None) -> Tensor:
    """``F.embedding(index, weight, padding_idx=padding_idx).sum(1)`` for ``index`` [N, C]: on CPU
    without embedding's backward (``_SummedEmbedding``), on CUDA as written."""
    if index.device.type != "cpu":
        return F.embedding(index, weight, padding_idx=padding_idx).sum(1)
    return _SummedEmbedding.apply(weight, index, padding_idx)


class _SummedEmbedding(torch.autograd.Function):
    """``F.embedding(index, weight, padding_idx=padding_idx).sum(1)`` on CPU without the
    [N, C, width] embeddings: an embedding bag forward, and a backward of one index_add per column.
    At a batch's 21,000 neighbour rows x 5 columns that intermediate and its gradient are 13 MB each
    way, and embedding's own backward is 4x slower than the index_adds (8.8 -> 2.2 ms). First
    derivatives only (nothing differentiates the backbone twice)."""

    @staticmethod
    def forward(ctx, weight: Tensor, index: Tensor, padding_idx: int | None) -> Tensor:
        ctx.save_for_backward(index)
        ctx.padding_idx, ctx.num_rows = padding_idx, weight.shape[0]
        return F.embedding_bag(index, weight, mode="sum")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        grad_weight = grad.new_zeros(ctx.num_rows, grad.shape[1])
        for column in index.t().contiguous():
            grad_weight.index_add_(0, column, grad)
        if ctx.padding_idx is not None:  # the padding row takes no gradient, as in F.embedding
            grad_weight[ctx.padding_idx] = 0
        return grad_weight, None, None


def summed_cells(encoder: nn.Module, feat) -> Tensor:
    """``encoder``'s cell embeddings of ``feat`` summed over the columns, [N, channels], without
    pytorch-frame's NaN clean-up of every cell embedding and the concatenation of all columns':
    with their backward those took 44 % of this encoder's time at a batch's 21,000 neighbour rows,
    15 % of the bare backbone's CPU step (docs/benchmarks.md). Numbers and timestamps are summed by
    one matrix product each (timestamps: 8.3 -> 4.6 ms at 20,000 rows, forward and backward). Same
    parameters, same values up to float rounding (tested)."""
    if encoder.post_module is None:
        if isinstance(encoder, EmbeddingEncoder):  # -1 (unknown) -> the zero padding row, as there
            index = torch.where(feat < 0, 0, feat + encoder.offset + 1)
            return summed_embedding_rows(encoder.emb.weight, index, encoder.emb.padding_idx)
        if isinstance(encoder, LinearEncoder):  # missing -> the training mean (na_forward), then standardised
            x = (encoder.na_forward(feat) - encoder.mean) / encoder.std
            return x @ encoder.weight + encoder.bias.sum(0)
        if isinstance(encoder, TimestampEncoder):  # its encodings of each time part, then one product
            feat = encoder.na_forward(feat).to(torch.float32)
            year = feat[..., :1] - encoder.min_year.view(1, -1, 1)
            parts = feat[..., 1:] / encoder.max_values.view(1, 1, -1)
            x = torch.cat([encoder.positional_encoding(year), encoder.cyclic_encoding(parts)], dim=2)
            return x.flatten(1) @ encoder.weight.flatten(0, 2) + encoder.bias.sum(0)
    return encoder(feat).sum(1)
