import numpy as np
import pandas as pd
import torch
import torch_frame

from relssl.data.encoding import encode_table
from relssl.data.splits import TEST, TRAIN, VAL, temporal_split


def test_statistics_and_vocabulary_come_from_training_rows_only():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 1000.0], "c": ["a", "b", "a", "zzz"]})
    enc = encode_table(df, {"x": torch_frame.numerical, "c": torch_frame.categorical}, np.arange(3))
    x = next(c for c in enc.columns if c.name == "x")
    c = next(c for c in enc.columns if c.name == "c")
    assert x.mean == 2.0
    assert c.num_categories == 2
    cats = enc.tf.feat_dict[torch_frame.categorical][:, c.index]
    assert cats[3] == -1  # unseen in training -> unknown index
    assert cats[0] == cats[2] != cats[1]


def test_max_categories_keeps_the_most_frequent():
    df = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["c"]})
    enc = encode_table(df, {"c": torch_frame.categorical}, np.arange(9), max_categories=2)
    assert enc.columns[0].num_categories == 2
    assert (enc.tf.feat_dict[torch_frame.categorical][:, 0] == -1).sum() == 1


def test_log1p_transform_and_raw_values_kept():
    df = pd.DataFrame({"amount": [0.0, np.e - 1, 99.0, -99.0]})
    enc = encode_table(df, {"amount": torch_frame.numerical}, np.arange(4), {"amount": "log1p"})
    vals = enc.tf.feat_dict[torch_frame.numerical][:, 0]
    # signed: a negative amount (a refund) maps to -log1p(|x|)
    assert torch.allclose(vals, torch.tensor([0.0, 1.0, np.log(100.0), -np.log(100.0)], dtype=vals.dtype), atol=1e-5)
    assert df["amount"].tolist() == [0.0, np.e - 1, 99.0, -99.0]  # the caller's frame keeps its raw values


def test_temporal_split_orders_splits_in_time():
    rng = np.random.default_rng(0)
    time = rng.integers(0, 1000, 10_000)
    split = temporal_split(time, len(time))
    assert time[split == TRAIN].max() < time[split == VAL].min()
    assert time[split == VAL].max() < time[split == TEST].min()
    shares = np.bincount(split) / len(split)
    assert np.allclose(shares, [0.6, 0.2, 0.2], atol=0.01)


def test_random_split_without_time_is_seeded():
    a = temporal_split(None, 1000, seed=1)
    assert np.array_equal(a, temporal_split(None, 1000, seed=1))
    assert not np.array_equal(a, temporal_split(None, 1000, seed=2))
    assert np.bincount(a).tolist() == [600, 200, 200]


def test_numerical_statistics_equal_pytorch_frames():
    from torch_frame.data.stats import compute_col_stats

    from relssl.data.encoding import numerical_stats

    values = np.random.default_rng(0).lognormal(2, 1, 5000)
    values[::7] = np.nan
    ours, theirs = numerical_stats(values), compute_col_stats(pd.Series(values), torch_frame.numerical)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert np.allclose(ours[key], theirs[key], rtol=1e-12, atol=0), key
