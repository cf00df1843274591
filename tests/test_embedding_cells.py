"""Text/embedding cells in masking and in the cell heads: cosine loss, emb_cos and emb_r1."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch_frame

from relssl.data.encoding import encode_table
from relssl.masking import Masker
from relssl.metrics.sums import read_sums
from relssl.objectives.base import CellFeatures
from relssl.objectives.mcm import CellHeads, cell_metrics, embedding_scores


def test_embedding_scores_by_hand():
    truth = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pred = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    cos, hit = embedding_scores(pred, truth)
    # row 0 points at truth 0 (cos 1); row 1 points at truth 0, not its own truth 1 (cos 0);
    # row 2 points at truth 1 (cos 1) more than at its own truth 2 (cos 1/sqrt 2).
    assert cos.tolist() == pytest.approx([1.0, 0.0, 1 / math.sqrt(2)])
    assert hit.tolist() == [True, False, False]


def test_identical_truths_are_one_candidate_and_ties_miss():
    truth = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pred = torch.tensor([[1.0, 0.1], [1.0, 1.0], [1.0, 1.0]])
    _, hit = embedding_scores(pred, truth)
    # row 0: its duplicate scores the same but is the same text -> hit; row 1 ties with a
    # different truth -> miss (pessimistic); so does row 2.
    assert hit.tolist() == [True, False, False]


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 400
    vec = rng.normal(size=(n, 3)).astype(np.float32)
    vec[::4] = 0  # every fourth vector missing
    df = pd.DataFrame({"x": rng.normal(size=n), "c": rng.integers(0, 3, n).astype(str)})
    return encode_table(df, {"x": torch_frame.numerical, "c": torch_frame.categorical, "v": torch_frame.embedding},
                        np.arange(300), vectors={"v": vec}), vec


def test_masker_targets_only_present_vectors_and_replaces_from_training(table):
    enc, vec = table
    masker = Masker(enc, torch.arange(300), "replace", prob=1.0)
    tf = enc.tf[torch.arange(400)]
    masked = masker(tf, torch.Generator().manual_seed(0))
    v_pos = [p for p, c in enumerate(enc.columns) if c.stype == torch_frame.embedding][0]
    present = torch.from_numpy(vec.any(1))
    assert torch.equal(masked.target[:, v_pos], present)
    new = masked.tf.feat_dict[torch_frame.embedding].values
    old = tf.feat_dict[torch_frame.embedding].values
    train_vectors = {tuple(v) for v in vec[:300][vec[:300].any(1)].tolist()}
    changed = (new != old).any(1)
    assert changed[present].float().mean() > 0.95 and not changed[~present].any()
    assert all(tuple(v) in train_vectors for v in new[present].tolist())
    assert torch.equal(masked.corrupted[:, v_pos], changed)
    assert torch.equal(tf.feat_dict[torch_frame.embedding].values, old)  # the input is untouched
    assert (enc.tf.feat_dict[torch_frame.embedding].values.numpy() == vec).all()


def test_remove_flags_embedding_cells_without_changing_values(table):
    enc, _ = table
    masker = Masker(enc, torch.arange(300), "remove")
    tf = enc.tf[torch.arange(400)]
    masked = masker(tf, torch.Generator().manual_seed(1))
    assert torch.equal(masked.remove, masked.target) and masked.target.sum(1).eq(1).all()
    assert torch.equal(masked.tf.feat_dict[torch_frame.embedding].values, tf.feat_dict[torch_frame.embedding].values)
    v_pos = len(enc.columns) - 1
    assert masked.target[:, v_pos].any()  # embedding cells are among the chosen


def test_cell_heads_cosine_loss_and_metrics(table):
    enc, _ = table
    masker = Masker(enc, torch.arange(300), "replace")
    heads = CellHeads(masker, 8)
    tf = enc.tf[torch.arange(1, 4)]  # rows 1..3 have vectors
    target = torch.zeros(3, len(enc.columns), dtype=torch.bool)
    target[:, -1] = True
    cells, rows = torch.randn(3, len(enc.columns), 5), torch.randn(3, 3)
    loss, sums = heads.loss(CellFeatures(cells, rows), target, tf)
    sums = read_sums(sums)
    out = heads.heads[str(len(enc.columns) - 1)](torch.cat([cells[:, -1], rows], -1))
    truth = tf.feat_dict[torch_frame.embedding].values
    cos, hit = embedding_scores(out, truth)
    assert loss.item() == pytest.approx((1 - cos).mean().item(), abs=1e-6)
    assert sums["emb_count/v"] == 3 and sums["emb_cos/v"] == pytest.approx(cos.sum().item(), abs=1e-6)
    m = cell_metrics({**sums, "loss": loss.item(), "batches": 1})
    assert m["emb_cos"] == pytest.approx(cos.mean().item(), abs=1e-6)
    assert m["emb_r1"] == pytest.approx(hit.float().mean().item())
    # the reference: the mean of the training rows' vectors (the missing all-zero ones left out)
    train = enc.tf.feat_dict[torch_frame.embedding].values[:300]
    mean = train[train.ne(0).any(1)].mean(0)
    ref = torch.nn.functional.cosine_similarity(mean.expand_as(truth), truth, dim=-1).mean()
    assert m["emb_cos_ref"] == pytest.approx(ref.item(), abs=1e-6)
    assert "acc" not in m and "rmse" not in m
