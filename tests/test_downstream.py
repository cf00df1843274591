"""Downstream evaluation on toy data: tasks and labelled sets, no leakage into pre-training or the
threshold, and probe / fine-tune / GBDT learning what is learnable."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch_frame

from relssl.data.prepare import prepare
from relssl.data.relational import RelationalData
from relssl.data.splits import TEST, TRAIN, VAL
from relssl.errors import RelsslError
from relssl.metrics.classification import choose_threshold, multiclass_metrics, split_metrics
from relssl.eval.tasks import labelled_sets, parse_task
from relssl.nn.backbone import ModelConfig
from relssl.eval.finetune import FinetuneConfig, Finetuner, finetune
from relssl.train.pretrain import PretrainConfig, Pretrainer

SMALL = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=1, fanouts=[4, 2])


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_graph(n: int = 3000, entities: int = 300, seed: int = 0) -> RelationalData:
    """Events whose label is readable from their own cells ('linear': a in {a0, a1}; 'xor': the
    parity of a + c, which trees learn and a linear read-out of random features does not), a
    numerical label 'score' = 2x + noise, and entities labelled 'fraud' (seen only through the
    x of their outgoing events) or 'vip' (seen in their own 'balance')."""
    rng = np.random.default_rng(seed)
    node_label, vip = rng.random(entities) < 0.4, rng.random(entities) < 0.3
    src, dst = rng.integers(0, entities, n), rng.integers(0, entities, n)
    a, c = rng.integers(0, 5, n), rng.integers(0, 4, n)
    x = rng.normal(0, 1, n) + 3.0 * node_label[src]
    events = pd.DataFrame({"a": [f"a{v}" for v in a], "c": [f"c{v}" for v in c], "x": x,
                           "linear": (a < 2).astype(int), "xor": ((a + c) % 2).astype(int),
                           "score": 2 * x + rng.normal(0, 0.1, n)})
    ents = pd.DataFrame({"key": np.arange(entities), "balance": rng.normal(0, 1, entities) + 3.0 * vip,
                         "fraud": node_label.astype(int), "vip": vip.astype(int)})
    return RelationalData(
        name="toy", events=events, col_stypes={"a": torch_frame.categorical, "c": torch_frame.categorical,
                                               "x": torch_frame.numerical},
        label_cols=["linear", "xor", "score"], time=np.sort(rng.integers(0, 30 * 86400, n)),
        src=src, dst=dst, num_entities=entities, entity_keys=ents[["key"]], entities=ents,
        entity_col_stypes={"balance": torch_frame.numerical}, entity_label_cols=["fraud", "vip"])


@pytest.fixture(scope="module")
def prep():
    return prepare(toy_graph())


def run(prep, tmp_path, task, mode="finetune", epochs=4, fraction=1.0, batch_size=256, name="run"):
    cfg = FinetuneConfig(task=task, mode=mode, label_fraction=fraction,
                         train=PretrainConfig(data="toy", epochs=epochs, batch_size=batch_size, lr=3e-3,
                                              model=SMALL, patience=20))
    return finetune(cfg, tmp_path / name, prep=prep, progress=False, log=lambda _: None)


def test_task_syntax_defaults_and_errors(prep):
    data = prep.data
    assert parse_task(None, data).name == "edge:linear"  # the first declared label column
    assert parse_task("node:fraud", data).target == "node"
    assert parse_task("edge-regression:score", data).regression
    for bad, needle in [("linear", "KIND:COLUMN"), ("edge:fraud", "event label"), ("node:linear", "entity label"),
                        ("graph:x", "KIND:COLUMN")]:
        with pytest.raises(RelsslError, match=needle):
            parse_task(bad, data)
    with pytest.raises(RelsslError, match="two classes"):
        labelled_sets(prep, parse_task("edge:score", data), seed=0)


def test_label_fraction_subsamples_training_labels_only(prep):
    spec = parse_task("edge:linear", prep.data)
    full = labelled_sets(prep, spec, seed=0)
    part = labelled_sets(prep, spec, seed=0, label_fraction=0.1)
    again = labelled_sets(prep, spec, seed=0, label_fraction=0.1)
    other = labelled_sets(prep, spec, seed=1, label_fraction=0.1)
    assert set(part.ids[TRAIN].tolist()) < set(full.ids[TRAIN].tolist())
    assert torch.equal(part.ids[TRAIN], again.ids[TRAIN]) and not torch.equal(part.ids[TRAIN], other.ids[TRAIN])
    for s in (VAL, TEST):
        assert torch.equal(part.ids[s], full.ids[s]) and np.array_equal(part.y[s], full.y[s])
    # stratified: each class keeps about a tenth of its training rows
    for cls in (0, 1):
        assert abs((part.y[TRAIN] == cls).sum() - 0.1 * (full.y[TRAIN] == cls).sum()) <= 1
    assert np.array_equal(prep.split[full.ids[TRAIN].numpy()], np.zeros(len(full.ids[TRAIN])))  # temporal split


def test_given_node_split_is_used_and_validation_carved_from_its_train_part():
    data = toy_graph()
    rng = np.random.default_rng(3)
    data.entities["is_test"] = rng.random(data.num_entities) < 0.3
    data.entities["is_train"] = ~data.entities["is_test"]
    data.entity_label_cols += ["is_train", "is_test"]
    sets = labelled_sets(prepare(data), parse_task("node:fraud", data), seed=0)
    assert set(sets.ids[TEST].tolist()) == set(np.flatnonzero(data.entities["is_test"]))
    assert set(sets.ids[VAL].tolist()) <= set(np.flatnonzero(data.entities["is_train"]))
    assert len(sets.ids[VAL]) == round(0.25 * (~data.entities["is_test"]).sum())  # val/(train+val) of 60/20/20


def test_threshold_maximises_validation_f1():
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1])
    assert choose_threshold(scores, y) == 0.35  # F1 6/7 (at 0.8: 4/5)
    assert split_metrics("binary", (scores, y), (scores, y))["val/f1"] == pytest.approx(6 / 7)
    assert choose_threshold(scores, np.zeros(6)) == 0.5


def test_test_labels_change_only_the_test_metrics(tmp_path):
    """The threshold and validation metrics are functions of validation predictions only."""
    data = toy_graph()
    base = run(prepare(data), tmp_path, "edge:linear", mode="probe", name="a")
    test_rows = np.flatnonzero(prepare(data).split == TEST)
    flipped = toy_graph()
    flipped.events.loc[test_rows[::2], "linear"] = 1 - flipped.events.loc[test_rows[::2], "linear"]
    other = run(prepare(flipped), tmp_path, "edge:linear", mode="probe", name="b")
    same = {k: v for k, v in base.items() if not k.startswith(("test/", "seconds"))}
    assert same == {k: v for k, v in other.items() if not k.startswith(("test/", "seconds"))}
    assert base["test/f1"] != other["test/f1"]


def test_pretraining_never_sees_labels():
    data = toy_graph()
    shuffled = toy_graph()
    rng = np.random.default_rng(5)
    for col in shuffled.label_cols:
        shuffled.events[col] = rng.permutation(shuffled.events[col].to_numpy())
    shuffled.entities["fraud"] = rng.permutation(shuffled.entities["fraud"].to_numpy())
    a, b = prepare(data), prepare(shuffled)
    features = {c.name for c in a.events.columns}
    assert features == {"a", "c", "x"} and {c.name for c in a.entities.columns} == {"balance"}  # no labels
    cfg = PretrainConfig(data="toy", epochs=1, batch_size=256, train_rows_per_epoch=512, eval_rows=256, model=SMALL)
    results = []
    for prep in (a, b):
        trainer = Pretrainer(cfg, prep)
        trainer.train_epoch(1, progress=False)
        results.append(trainer.evaluate(VAL))
    assert results[0] == results[1]


def test_random_embeddings_probe_does_not_beat_gbdt(prep, tmp_path):
    gbdt = run(prep, tmp_path, "edge:xor", mode="gbdt", name="gbdt")
    probe = run(prep, tmp_path, "edge:xor", mode="probe", name="probe")  # untrained backbone
    assert gbdt["test/roc_auc"] > 0.95
    assert probe["test/roc_auc"] < gbdt["test/roc_auc"] and probe["test/f1"] <= gbdt["test/f1"]


@pytest.mark.slow
def test_probe_and_finetune_learn_a_toy_edge_task(prep, tmp_path):
    for mode in ("probe", "finetune"):
        final = run(prep, tmp_path, "edge:linear", mode=mode, name=mode)
        assert final["test/roc_auc"] > 0.9 and final["test/f1"] > 0.8, (mode, final)


@pytest.mark.slow
def test_probe_and_finetune_learn_toy_node_tasks(prep, tmp_path):
    """Fine-tuning learns a label visible only in the neighbourhood; a probe on random embeddings
    reads a label from the entity's own features."""
    tune = run(prep, tmp_path, "node:fraud", epochs=15, batch_size=32, name="finetune")
    probe = run(prep, tmp_path, "node:vip", mode="probe", name="probe")
    for final in (tune, probe):
        assert final["test/roc_auc"] > 0.85, final
        assert final["train_labels"] + final["val_rows"] + final["test_rows"] == prep.data.num_entities


@pytest.mark.slow
def test_edge_regression(prep, tmp_path):
    std = prep.data.events["score"].std()
    for mode in ("gbdt", "finetune"):
        final = run(prep, tmp_path, "edge-regression:score", mode=mode, epochs=6, batch_size=64, name=mode)
        assert "threshold" not in final and final["test/rmse"] < 0.3 * std, (mode, final)


def test_the_trivial_reference_by_hand(prep, tmp_path):
    """One prediction for every row from the training labels alone: their mean (regression), their
    class shares (multiclass: the majority class), their positive rate (binary)."""
    final = run(prep, tmp_path, "edge-regression:score", mode="reference", name="mean")
    tuner = Finetuner(FinetuneConfig("edge-regression:score", train=PretrainConfig(data="toy", model=SMALL)), prep)
    y_train, y_test = tuner.sets.y[TRAIN], tuner.sets.y[TEST]
    assert final["test/rmse"] == pytest.approx(np.sqrt(np.mean((y_test - y_train.mean()) ** 2)))
    binary = run(prep, tmp_path, "edge:linear", mode="reference", name="rate")
    assert binary["test/roc_auc"] == 0.5
    with pytest.raises(RelsslError, match="--mode reference uses no backbone"):
        FinetuneConfig("edge:linear", init=str(tmp_path), mode="reference").validate()


def test_finetune_is_deterministic_and_writes_its_run_folder(prep, tmp_path):
    a = run(prep, tmp_path, "edge:linear", epochs=2, fraction=0.2, name="a")
    b = run(prep, tmp_path, "edge:linear", epochs=2, fraction=0.2, name="b")
    strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert strip(a) == strip(b)
    for name in ("config.yaml", "final.json", "metrics.jsonl", "model.safetensors"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    with pytest.raises(RelsslError, match="already exists there"):
        run(prep, tmp_path, "edge:linear", name="a")


def test_a_single_training_class_is_a_clear_error():
    data = toy_graph()
    data.events["linear"] = 0
    data.events.loc[data.events.index[-5:], "linear"] = 1  # positives only in the test period
    prep = prepare(data)
    with pytest.raises(RelsslError, match="single class"):
        Finetuner(FinetuneConfig(task="edge:linear", train=PretrainConfig(data="toy", model=SMALL)), prep)


def test_a_validation_split_without_positives_is_one_clear_error():
    data = toy_graph()
    data.events["linear"] = np.where(np.arange(len(data.events)) < 0.6 * len(data.events),
                                     data.events["linear"], 0)  # positives in the training period only
    cfg = FinetuneConfig("edge:linear", mode="gbdt", train=PretrainConfig(data="toy", device="cpu"))
    with pytest.raises(RelsslError, match="the validation rows hold no '1' label"):
        Finetuner(cfg, prepare(data))


def test_multiclass_metrics_by_hand():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    y = np.array([0, 1, 1, 2])  # predictions 0, 1, 2, 0: two right
    m = multiclass_metrics(probs, y)
    # F1 per class: 0 -> P 1/2, R 1 -> 2/3; 1 -> P 1, R 1/2 -> 2/3; 2 -> P 0, R 0 -> 0
    assert m["accuracy"] == 0.5 and m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    out = split_metrics("multiclass", (probs, y), (probs, y))
    assert "threshold" not in out and out["test/macro_f1"] == pytest.approx(4 / 9)


def test_the_multiclass_probe_has_a_logit_per_class_even_for_two_or_missing_classes():
    from relssl.eval.downstream import fit_probe

    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    for y in (np.where(x[:, 0] > 0, 2.0, 0.0), np.where(x[:, 0] > 0, 1.0, 0.0)):  # class 1 absent; two classes
        head = fit_probe(x, y, "multiclass")
        assert head.out_features == int(y.max()) + 1
        pred = head(x.float()).argmax(1).numpy()
        assert (pred == y).mean() > 0.9  # the separable classes are told apart, not collapsed onto one
    assert multiclass_metrics(np.eye(3)[[0, 2, 2]], np.array([0, 2, 2]))["macro_f1"] == 1.0  # class 1 in neither


def test_tuned_trees_keep_the_grid_point_best_on_validation(monkeypatch):
    """A grid of a stump that cannot split (every leaf needs 1,000 rows) and a tree that can: the
    tuned trees score as the one with the better validation PR-AUC, in either grid order."""
    from sklearn.metrics import average_precision_score

    from relssl.eval import baseline

    rng = np.random.default_rng(0)

    def rows(n):
        x = rng.uniform(0, 1, (n, 2))
        return x, ((x[:, 0] > 0.5) & (x[:, 0] < 0.6)).astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = rows(300), rows(500), rows(500)
    none = np.zeros(2, dtype=bool)
    stump, tree = dict(num_leaves=2, min_child_samples=1000), dict(num_leaves=8, min_child_samples=5)
    for grid in ([stump, tree], [tree, stump]):
        monkeypatch.setattr(baseline, "TREE_GRID", grid)
        val, test = baseline.gbdt_scores(xt, yt, none, "binary", 0, xv, xs, tune=(xv, yv))
        assert average_precision_score(yv, val) > 0.9 and average_precision_score(ys, test) > 0.9
    monkeypatch.setattr(baseline, "TREE_GRID", [stump])
    val, = baseline.gbdt_scores(xt, yt, none, "binary", 0, xv, tune=(xv, yv))
    assert np.ptp(val) == 0  # the stump alone: one score for every row
    # multiclass, training without class 1 of {0, 1, 2}: validation labels reach LightGBM as its own
    # class indices (2 -> 1), class 1's rows left out of early stopping; the class-2 band is learnt
    monkeypatch.setattr(baseline, "TREE_GRID", [tree])
    stopped_on = []

    class Recording(baseline.LGBMClassifier):
        def fit(self, *args, **kwargs):
            stopped_on.append(kwargs["eval_y"][0])
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(baseline, "LGBMClassifier", Recording)
    three = lambda x: np.where(x[:, 0] > 0.7, 2, np.where(x[:, 0] > 0.4, 1, 0))  # noqa: E731
    train = three(xt) != 1
    scores, = baseline.gbdt_scores(xt[train], three(xt)[train], none, "multiclass", 0, xs, tune=(xv, three(xv)))
    assert scores.shape == (len(xs), 3) and (scores[:, 1] == 0).all()
    assert np.array_equal(stopped_on[0], np.searchsorted([0, 2], three(xv)[three(xv) != 1]))
    assert (scores.argmax(1) == 2)[xs[:, 0] > 0.75].mean() > 0.95 and (scores.argmax(1) == 0)[xs[:, 0] < 0.35].mean() > 0.95


def test_a_run_that_predates_a_setting_counts_as_its_default(tmp_path):
    """A folder trained before ``trees`` existed is reused for the default, refused for 'tuned'."""
    from dataclasses import asdict

    import yaml

    from relssl.experiments.runner import check_same_settings

    saved = asdict(FinetuneConfig(mode="gbdt"))
    del saved["trees"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_same_settings(tmp_path, FinetuneConfig(mode="gbdt"))
    with pytest.raises(RelsslError, match="trees 'default' there, 'tuned' now"):
        check_same_settings(tmp_path, FinetuneConfig(mode="gbdt", trees="tuned"))
    # an option mapping is compared whole, in both directions
    saved["train"]["combiner_options"] = {"beta": 0.9}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(RelsslError, match=r"train.combiner_options \{'beta': 0.9\} there, \{\} now"):
        check_same_settings(tmp_path, FinetuneConfig(mode="gbdt"))
    moco = FinetuneConfig(mode="gbdt", train=PretrainConfig(combiner_options={"beta": 0.5}))
    with pytest.raises(RelsslError, match=r"\{'beta': 0.9\} there, \{'beta': 0.5\} now"):
        check_same_settings(tmp_path, moco)
    check_same_settings(tmp_path, moco, resolved=("combiner_options",))
