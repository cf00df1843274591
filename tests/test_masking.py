import json
import warnings

import numpy as np
import pytest
import torch
import torch_frame

from relssl.data.prepare import prepare
from relssl.errors import RelsslError
from relssl.masking import Masker, draw_other_category, twin_columns
from relssl.objectives import resolve_mask_groups
from tests.conftest import toy_relational


def make(mask_type, **kw):
    prep = prepare(toy_relational(3000))
    return prep, Masker(prep.events, prep.rows(0), mask_type, **kw)


def cat_positions(masker):
    return [p for p, c in enumerate(masker.columns) if c.stype == torch_frame.categorical]


def test_replace_never_returns_original_category():
    prep, masker = make("replace", prob=1.0)
    tf = prep.events.tf[torch.arange(2000)]
    masked = masker(tf, torch.Generator().manual_seed(0))
    for pos in cat_positions(masker):
        col = masker.columns[pos]
        old = tf.feat_dict[col.stype][:, col.index]
        new = masked.tf.feat_dict[col.stype][:, col.index]
        assert masked.target[:, pos].all()
        assert (new != old).all(), col.name
        assert masked.corrupted[:, pos].all()
    assert not masked.remove.any()
    # the original frame is untouched
    assert torch.equal(tf.feat_dict[torch_frame.categorical], prep.events.tf[torch.arange(2000)].feat_dict[torch_frame.categorical])


def test_replaced_numbers_are_drawn_from_their_own_columns_training_values():
    import dataclasses

    data = toy_relational(3000)
    rng = np.random.default_rng(1)
    far = rng.normal(100, 1, 3000)  # values no other column has
    far[rng.random(3000) < 0.2] = np.nan  # missing cells are never targets, nor drawn
    data = dataclasses.replace(data, events=data.events.assign(z=far),
                               col_stypes={**data.col_stypes, "z": torch_frame.numerical})
    prep = prepare(data)
    masker = Masker(prep.events, prep.rows(0), "replace", prob=0.5)
    tf = prep.events.tf[torch.arange(2000)]
    before = tf.feat_dict[torch_frame.numerical].clone()
    masked = masker(tf, torch.Generator().manual_seed(0))
    train = prep.events.tf.feat_dict[torch_frame.numerical][prep.rows(0)]
    assert len(masker.num_pos) == 2
    for pos in masker.num_pos.tolist():
        j, chosen = masker.columns[pos].index, masked.target[:, pos]
        new, old, pool = masked.tf.feat_dict[torch_frame.numerical][:, j], before[:, j], train[:, j]
        pool = pool[~pool.isnan()]
        assert 400 < int(chosen.sum()) < 1500
        assert torch.isin(new[chosen], pool).all()  # this column's training values, not another's
        assert torch.allclose(new[~chosen], old[~chosen], rtol=0, atol=0, equal_nan=True)
        assert torch.equal(masked.corrupted[:, pos], chosen & (new != old))
        spread = float(pool.std()) / float(chosen.sum()) ** 0.5  # drawn like the training distribution
        assert abs(float(new[chosen].mean()) - float(pool.mean())) < 4 * spread
    assert torch.allclose(tf.feat_dict[torch_frame.numerical], before, rtol=0, atol=0, equal_nan=True)  # untouched


def test_draw_other_category_matches_conditional_frequencies():
    counts = torch.tensor([50.0, 30.0, 20.0], dtype=torch.float64)
    old = torch.zeros(200_000, dtype=torch.long)
    new = draw_other_category(torch.cumsum(counts, 0), old, torch.Generator().manual_seed(1))
    freq = torch.bincount(new, minlength=3).double() / len(new)
    assert freq[0] == 0
    assert abs(freq[1] - 0.6) < 0.01 and abs(freq[2] - 0.4) < 0.01


def test_bert_proportions():
    prep, masker = make("bert", prob=1.0)
    tf = prep.events.tf[torch.arange(3000)]
    masked = masker(tf, torch.Generator().manual_seed(2))
    n = masked.target.sum().item()
    removed = masked.remove.sum().item() / n
    kept = (masked.target & ~masked.remove).sum().item() / n  # replaced or unchanged
    assert abs(removed - 0.8) < 0.02
    assert abs(kept - 0.2) < 0.02
    cats = cat_positions(masker)
    replaced_cat = (masked.corrupted[:, cats] & ~masked.remove[:, cats]).sum().item()
    assert abs(replaced_cat / masked.target[:, cats].sum().item() - 0.1) < 0.02


def test_remove_flags_cells_without_changing_values():
    prep, masker = make("remove")
    tf = prep.events.tf[torch.arange(500)]
    masked = masker(tf, torch.Generator().manual_seed(3))
    assert torch.equal(masked.remove, masked.target)
    assert (masked.target.sum(1) == 1).all()  # one cell per row by default
    for stype in tf.stypes:
        assert torch.equal(masked.tf.feat_dict[stype], tf.feat_dict[stype])


def test_masks_follow_the_generator_seed():
    prep, masker = make("bert", prob=0.3)
    tf = prep.events.tf[torch.arange(3000)]
    a = masker(tf, torch.Generator().manual_seed(5))
    b = masker(tf, torch.Generator().manual_seed(5))
    c = masker(tf, torch.Generator().manual_seed(6))
    assert torch.equal(a.target, b.target) and torch.equal(a.remove, b.remove)
    assert not torch.equal(a.target, c.target)
    rate = a.target[:, masker.maskable].float().mean().item()
    assert abs(rate - 0.3) < 0.015


def test_missing_cells_are_never_targets():
    data = toy_relational(1000)
    data.events.loc[::2, "x"] = float("nan")
    data.events.loc[1::3, "a"] = None
    prep = prepare(data)
    masker = Masker(prep.events, prep.rows(0), "replace", prob=1.0)
    tf = prep.events.tf[torch.arange(1000)]
    masked = masker(tf, torch.Generator().manual_seed(0))
    x_pos = [p for p, c in enumerate(masker.columns) if c.name == "x"][0]
    a_pos = [p for p, c in enumerate(masker.columns) if c.name == "a"][0]
    assert not masked.target[::2, x_pos].any() and masked.target[1::2, x_pos].all()
    assert not masked.target[1::3, a_pos].any()


def twin_toy(n: int = 2000):
    """The toy plus 'a2' (equal to 'a' in ~97 % of rows, its own vocabulary) and 'x2' (equal to 'x'
    in ~97 %)."""
    data = toy_relational(n)
    rng = np.random.default_rng(1)
    flip = rng.random(n) < 0.03
    data.events["a2"] = data.events["a"].where(~flip, "other")
    data.events["x2"] = data.events["x"].where(~flip, -1.0)
    data.col_stypes.update(a2=torch_frame.categorical, x2=torch_frame.numerical)
    return data


def test_twin_columns_are_found_by_value():
    prep = prepare(twin_toy())
    twins = {(a, b): share for a, b, share in twin_columns(prep.events, prep.rows(0))}
    assert set(twins) == {("a", "a2"), ("x", "x2")}, twins  # 'b' names the same classes differently
    assert all(0.95 < share < 0.99 for share in twins.values())


def test_a_mask_group_is_chosen_together():
    prep = prepare(twin_toy())
    names = [c.name for c in prep.events.columns]
    groups = [[names.index("x"), names.index("x2")]]
    tf = prep.events.tf[torch.arange(2000)]
    for kw in ({}, {"prob": 0.3}, {"cells_per_row": 2}):
        masker = Masker(prep.events, prep.rows(0), "replace", groups=groups, **kw)
        target = masker(tf, torch.Generator().manual_seed(0)).target
        x, x2 = target[:, names.index("x")], target[:, names.index("x2")]
        assert torch.equal(x, x2) and x.any(), kw
        units = target.sum(1) - x.long()  # a chosen group counts once
        if not kw:
            assert (units == 1).all()
        if "cells_per_row" in kw:
            assert (units == 2).all()
    # without groups the same seed draws the same masks as before groups existed
    plain = Masker(prep.events, prep.rows(0), "replace", prob=0.3)
    grouped = Masker(prep.events, prep.rows(0), "replace", prob=0.3, groups=groups)
    a = plain(tf, torch.Generator().manual_seed(4)).target
    b = grouped(tf, torch.Generator().manual_seed(4)).target
    others = [p for p in range(len(names)) if names[p] not in ("x", "x2")]
    assert torch.equal(a[:, others], b[:, others])


def test_mask_groups_default_to_twins_and_warn_when_left_apart():
    prep = prepare(twin_toy())
    names = [c.name for c in prep.events.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default groups every twin: no warning
        groups = resolve_mask_groups(None, prep)
    assert sorted(sorted(names[p] for p in g) for g in groups) == [["a", "a2"], ["x", "x2"]]
    with pytest.warns(UserWarning, match="'a' and 'a2' are equal in 9.\\..% of training rows"):
        assert resolve_mask_groups("x+x2", prep) == [[names.index("x"), names.index("x2")]]
    with pytest.warns(UserWarning) as record:
        assert resolve_mask_groups("none", prep) == []
    assert sorted(str(w.message).split("--mask-groups ")[1] for w in record) == ["'a+a2'", "'x+x2'"]
    for bad in ("x+nope", "x", "x+x2;x+a"):
        with pytest.raises(RelsslError, match="--mask-groups .*expected groups of two or more distinct"):
            resolve_mask_groups(bad, prep)


@pytest.mark.parametrize("mask_type", ["replace", "bert", "remove"])
def test_excluded_columns_are_never_hidden_nor_predicted(mask_type):
    prep = prepare(toy_relational(3000))
    exclude = cat_positions(Masker(prep.events, prep.rows(0), mask_type))[:1]
    masker = Masker(prep.events, prep.rows(0), mask_type, prob=1.0, exclude=exclude)
    tf = prep.events.tf[torch.arange(2000)]
    masked = masker(tf, torch.Generator().manual_seed(0))
    col = masker.columns[exclude[0]]
    assert not masked.target[:, exclude].any() and not masked.remove[:, exclude].any()
    assert torch.equal(masked.tf.feat_dict[col.stype][:, col.index], tf.feat_dict[col.stype][:, col.index])
    others = [p for p in range(len(masker.columns)) if masker.maskable[p]]
    assert masked.target[:, others].all()  # every other cell still masked at probability 1


def test_mask_exclude_names_maskable_columns(tmp_path, capsys, monkeypatch):
    from relssl.cli import main
    from tests.conftest import TINY

    out = tmp_path / "r"
    args = ["pretrain", "--epochs", "1", "--mask-exclude", "From Bank,To Bank", "--out", str(out), *TINY]
    monkeypatch.setattr("sys.argv", ["relssl", *args])  # as the shell gave them: the model card names the command
    assert main(args) == 0
    assert f"- **Command**: `relssl pretrain --epochs 1 --mask-exclude 'From Bank,To Bank' --out {out} " in (
        out / "README.md").read_text()
    final = json.loads((out / "final.json").read_text())
    assert {k for k in final if k.startswith("mcm/acc/")} == {
        "mcm/acc/Payment Currency", "mcm/acc/Receiving Currency", "mcm/acc/Payment Format"}
    capsys.readouterr()
    assert main(["pretrain", "--mask-exclude", "Timestamp", "--out", str(tmp_path / "bad"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--mask-exclude Timestamp: 'Timestamp' is not a maskable column; expected some of Amount Paid" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "bad").exists()
    # checked whatever the tasks (LP masks nothing), and a mask group goes whole or not at all
    assert main(["pretrain", "--objectives", "lp", "--mask-exclude", "Nope", "--out", str(tmp_path / "bad"), *TINY]) == 2
    assert "--mask-exclude Nope: 'Nope' is not a maskable column" in capsys.readouterr().err
    assert main(["pretrain", "--mask-exclude", "Payment Currency", "--out", str(tmp_path / "bad"), *TINY]) == 2
    err = capsys.readouterr().err
    assert ("--mask-exclude Payment Currency: Payment Currency shares a mask group with Receiving Currency, which "
            "would be masked while Payment Currency stays visible (a copy task)") in err and err.count("\n") == 1, err
    assert main(["pretrain", "--epochs", "1", "--mask-exclude", "Payment Currency", "--mask-groups", "none",
                 "--out", str(tmp_path / "apart"), *TINY]) == 0
