"""Batch assembly's gathers: the fast paths return exactly what pytorch-frame's and torch's do."""
from __future__ import annotations

import pytest
import torch
import torch_frame
from torch_frame import TensorFrame
from torch_frame.data import MultiEmbeddingTensor, MultiNestedTensor

from relssl.graph.batch import take_rows, unique_inverse


def test_take_rows_equals_indexing_for_every_kind_of_column():
    gen = torch.Generator().manual_seed(0)
    rows = 40
    feats = {
        torch_frame.numerical: torch.randn(rows, 3, generator=gen),
        torch_frame.categorical: torch.randint(-1, 5, (rows, 2), generator=gen),
        torch_frame.timestamp: torch.randint(0, 60, (rows, 1, 7), generator=gen),
        torch_frame.embedding: MultiEmbeddingTensor(num_rows=rows, num_cols=2, values=torch.randn(rows, 7, generator=gen),
                                                    offset=torch.tensor([0, 3, 7])),
        torch_frame.multicategorical: MultiNestedTensor.from_tensor_mat(
            [[torch.arange(i % 3)] for i in range(rows)]),
    }
    names = {stype: [f"{stype.value}{j}" for j in range(feat.num_cols if hasattr(feat, "num_cols") else feat.shape[1])]
             for stype, feat in feats.items()}
    tf = TensorFrame(feats, names, y=torch.arange(rows))
    pick = torch.tensor([5, 0, 39, 5, 17])  # repeated and out of order
    got, want = take_rows(tf, pick), tf[pick]
    assert got.num_rows == 5 and torch.equal(got.y, want.y)
    for stype in feats:
        a, b = got.feat_dict[stype], want.feat_dict[stype]
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        elif isinstance(a, MultiEmbeddingTensor):
            assert torch.equal(a.values, b.values) and torch.equal(a.offset, b.offset)
        else:
            assert torch.equal(a.values, b.values) and torch.equal(a.offset, b.offset)
    assert take_rows(TensorFrame({}, {}, num_rows=rows), pick).num_rows == 5  # a frame without columns


@pytest.mark.parametrize("values", [torch.tensor([7, 3, 7, 0, 3, 9]), torch.zeros(0, dtype=torch.long),
                                    torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(1))])
def test_unique_inverse_equals_torch_unique(values):
    rows, inverse = unique_inverse(values)
    want_rows, want_inverse = torch.unique(values, return_inverse=True)
    assert torch.equal(rows, want_rows) and torch.equal(inverse, want_inverse)
    assert rows.dtype == values.dtype and inverse.dtype == torch.long
