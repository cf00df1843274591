"""Entity tasks at cut-off times (RelBench's user churn): examples and labels, their trees cut at
the cut-off, the cut-off features of the tree baseline, the schema's tasks: key, and a GNN that
learns churn from its rows' ages."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch_frame

from relssl.cli import main
from relssl.data.database import Database, ForeignKey, Table
from relssl.data.entity_tasks import EntityTask, task_rows
from relssl.data.prepare import prepare_database
from relssl.data.splits import TEST, TRAIN, VAL
from relssl.errors import RelsslError
from relssl.eval.baseline import cutoff_matrix
from relssl.eval.finetune import FinetuneConfig, Finetuner, finetune
from relssl.nn.backbone import AgeEncoder, Backbone, ModelConfig
from relssl.train.pretrain import PretrainConfig
from tests.conftest import TINY

DAY = 86400


def hand_graph(cuts=(10 * DAY, 14 * DAY)):
    """users u0..u2 (static, no features) and their visits on the days below."""
    user = np.array([0, 1, 0, 2, 0, 1, 0])
    day = np.array([1, 3, 5, 11, 12, 13, 20])
    return SimpleNamespace(names=["visits", "users"], num_rows=[7, 3], cuts=cuts, tables=[None, None],
                           times=[torch.from_numpy(day * DAY), None],
                           links={(0, "user -> users"): (1, torch.from_numpy(user))})


CHURN = EntityTask("churn", "users", "visits", "user -> users", 4 * DAY, 2 * DAY, "churn")


def test_examples_and_labels_by_hand():
    rows = task_rows(CHURN, hand_graph())
    got = list(zip(rows.time // DAY, rows.entity, rows.label, rows.split))
    # training cut-offs 2, 4, 6 (windows end by day 10); validation at 10, test at 14. A user is an
    # example once their first visit is at or before the cut-off (u2's is day 11).
    assert got == [(2, 0, 0, TRAIN), (4, 0, 0, TRAIN), (4, 1, 1, TRAIN), (6, 0, 1, TRAIN), (6, 1, 1, TRAIN),
                   (10, 0, 0, VAL), (10, 1, 0, VAL), (14, 0, 1, TEST), (14, 1, 1, TEST), (14, 2, 1, TEST)]
    count = task_rows(EntityTask("n", "users", "visits", "user -> users", 4 * DAY, 2 * DAY, "count"), hand_graph())
    assert count.label.tolist() == [1, 1, 0, 0, 0, 1, 1, 0, 0, 0]


def test_windows_that_do_not_fit_are_errors():
    with pytest.raises(RelsslError, match="test window .* runs past the last 'visits' row"):
        task_rows(CHURN, hand_graph(cuts=(10 * DAY, 17 * DAY)))
    with pytest.raises(RelsslError, match="no training cut-off"):
        task_rows(CHURN, hand_graph(cuts=(4 * DAY, 14 * DAY)))


def test_cutoff_features_count_only_earlier_rows():
    graph = hand_graph()
    rows = task_rows(CHURN, graph)
    x, categorical = cutoff_matrix(SimpleNamespace(database=graph), CHURN, rows)
    assert x.shape == (10, 3) and not categorical.any()
    at = {(int(t // DAY), int(e)): list(v) for t, e, v in zip(rows.time, rows.entity, x)}
    # (rows up to t, rows in (t - 4 days, t], seconds since the latest)
    assert at[10, 0] == [2, 0, 5 * DAY] and at[4, 1] == [1, 1, DAY] and at[14, 2] == [1, 1, 3 * DAY]
    assert at[14, 0] == [3, 1, 2 * DAY]  # day 20 is after the cut-off


def churn_database(users: int = 160, seed: int = 0) -> Database:
    """Users visit about every three days until a day of their own, then never again: at a
    cut-off, a user who has quit has no recent visit, and will not come back."""
    rng = np.random.default_rng(seed)
    quit_day = rng.uniform(20, 400, users)
    parts = []
    for u in range(users):  # test data only: a few hundred users
        days = np.cumsum(rng.exponential(3.0, 200))
        parts.append(pd.DataFrame({"user": u, "day": days[days < quit_day[u]]}))
    visits = pd.concat(parts, ignore_index=True).sort_values("day", kind="stable").reset_index(drop=True)
    visits["amount"] = rng.normal(0, 1, len(visits))
    tables = {
        "visits": Table("visits", visits, {"amount": torch_frame.numerical}, foreign_keys=[ForeignKey(("user",), "users")],
                        time=(visits["day"].to_numpy() * DAY).astype(np.int64)),
        "users": Table("users", pd.DataFrame({"user": np.arange(users)}), primary_key=("user",)),
    }
    tasks = {"churn": EntityTask("churn", "users", "visits", "user -> users", 20 * DAY, 10 * DAY, "churn")}
    return Database("visits", tables, tasks=tasks).check()


def tuner_for(db: Database, **kw) -> Finetuner:
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=2, fanouts=[16, 1])
    train = PretrainConfig(data="visits", batch_size=64, lr=3e-3, device="cpu", epochs=kw.pop("epochs", 12),
                           patience=12, model=model, **kw)
    return Finetuner(FinetuneConfig(task="churn", train=train), prepare_database(db, "visits"))


def test_an_examples_tree_never_reaches_past_its_cut_off():
    tuner = tuner_for(churn_database())
    examples, rep = tuner.examples, tuner.rep
    ids = tuner.sets.ids[VAL]
    batch = rep.batch(ids, VAL, torch.Generator().manual_seed(0))
    tree, visits = batch.graph.tree, 0
    at = (tree.node_table == visits).nonzero().squeeze(1)
    node_time = tuner.prep.database.times[visits][tree.node_row[at]]
    assert len(at) and (node_time <= torch.from_numpy(examples.time[ids.numpy()])[tree.node_seed[at]]).all()
    assert (batch.graph.age[at] >= 0).all() and (batch.graph.age[tree.node_table != visits] == -1).all()
    # Every visit after the validation cut-off changed: the examples' states stay bit for bit.
    backbone = Backbone(tuner.prep, tuner.cfg.train.model)
    before = rep.embed(backbone, ids, VAL, 64, 0, torch.device("cpu"))
    later = torch.from_numpy(np.flatnonzero(tuner.prep.database.times[visits].numpy() > examples.time[ids[0]]))
    assert len(later)
    tuner.prep.database.tables[visits].tf.feat_dict[torch_frame.numerical][later] += 100.0
    assert torch.equal(before, rep.embed(backbone, ids, VAL, 64, 0, torch.device("cpu")))


def test_a_static_row_has_no_age():
    enc = AgeEncoder(8)
    out = enc(torch.tensor([-1.0, 0.0, 3.0]))
    assert (out[0] == 0).all() and not torch.equal(out[1], out[2])


@pytest.mark.slow
def test_the_gnn_learns_churn_from_its_rows_ages(tmp_path):
    """Reference ROC-AUC is 0.5; the label is the user's recency, which only the rows' ages carry
    (four data seeds: 0.76-0.86 with ages, 0.42-0.52 without; one validation and one test cut-off)."""
    db = churn_database()
    tuner = tuner_for(db)
    assert tuner.spec.name == "churn" and tuner.kind == "binary" and tuner.sets.positive == "1"
    final = finetune(tuner.cfg, tmp_path / "ft", prep=tuner.prep, progress=False, log=lambda *a: None)
    assert final["test/roc_auc"] > 0.7, final
    blind = finetune(FinetuneConfig(task="churn", train=PretrainConfig(
        **{**tuner.cfg.train.__dict__, "model": ModelConfig(**{**tuner.cfg.train.model.__dict__, "node_age": False})})),
        tmp_path / "blind", prep=prepare_database(db, "visits"), progress=False, log=lambda *a: None)
    assert final["test/roc_auc"] > blind["test/roc_auc"] + 0.15, (final, blind)


SCHEMA = """
name: shop
tables:
  visits: {path: visits.csv, time: {column: day, unit: D}, foreign_keys: {user: users},
           columns: {amount: numerical}}
  users: {path: users.csv, primary_key: user}
tasks:
  churn: {entity: users, events: visits, window: 20d, every: 10d, label: churn}
"""


def shop(folder, text=SCHEMA):
    db = churn_database(users=80)
    db.tables["visits"].df[["user", "day", "amount"]].to_csv(folder / "visits.csv", index=False)
    db.tables["users"].df.to_csv(folder / "users.csv", index=False)
    (folder / "shop.yaml").write_text(text)
    return str(folder / "shop.yaml")


def test_entity_tasks_from_the_cli(tmp_path, capsys):
    data = shop(tmp_path)
    assert main(["schema", "check", data]) == 0
    assert "task churn: users rows, churn of their 'visits' rows (user -> users) in the 20 days" in capsys.readouterr().out
    for mode in ("reference", "gbdt", "finetune"):
        args = ["finetune", "--data", data, "--task", "churn", "--mode", mode, "--out", str(tmp_path / mode)]
        assert main(args + TINY + ["--epochs", "1"]) == 0, capsys.readouterr().err
        final = json.loads((tmp_path / mode / "final.json").read_text())
        assert final["task"] == "churn" and 0 <= final["test/roc_auc"] <= 1
    assert json.loads((tmp_path / "reference" / "final.json").read_text())["test/roc_auc"] == 0.5
    assert json.loads((tmp_path / "gbdt" / "final.json").read_text())["test/roc_auc"] > 0.9
    for args, needle in [(["--task", "chrun"], "the database's entity tasks: churn"),
                         (["--task", "churn", "--mode", "gbdt-graph"], "takes --mode gbdt"),
                         (["--task", "churn", "--task-type", "regression"], "has its kind from its label")]:
        assert main(["finetune", "--data", data, "--out", str(tmp_path / "bad"), *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


@pytest.mark.parametrize("old,new,needle", [
    ("label: churn}", "label: lost}", "label 'lost': expected one of churn, count"),
    ("window: 20d", "window: soon", "window: expected a positive duration"),
    ("entity: users", "entity: people", "entity 'people' is not a table"),
    ("every: 10d, ", "every: 10d, kind: x, ", "unknown key(s) ['kind']"),
    ("  churn: {", "  users: {", "is not a table's name"),
    ("time: {column: day, unit: D}, ", "", "events table 'visits' has no time column"),
])
def test_bad_tasks_get_one_line(tmp_path, capsys, old, new, needle):
    data = shop(tmp_path, SCHEMA.replace(old, new))
    assert main(["schema", "check", data]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_tasks_survive_the_cache(tmp_path):
    from relssl.data.cache import load_prepared

    data = shop(tmp_path)
    for i in range(2):  # built, then read back
        prep, hit = load_prepared(data, cache_dir=tmp_path / "cache")
        assert hit == (i == 1) and prep.database.tasks == {"churn": EntityTask("churn", "users", "visits", "user -> users", 20 * DAY,
                                                           10 * DAY, "churn")}


def test_a_validation_window_past_the_validation_period_is_an_error():
    with pytest.raises(RelsslError, match="the validation window .* runs past the validation period"):
        task_rows(CHURN, hand_graph(cuts=(10 * DAY, 12 * DAY)))


def test_cutoff_features_of_a_key_that_links_nothing():
    graph = hand_graph()
    rows = task_rows(CHURN, graph)
    graph.links[(0, "user -> users")] = (1, torch.full((7,), -1))
    x, _ = cutoff_matrix(SimpleNamespace(database=graph), CHURN, rows)
    assert (x[:, :2] == 0).all() and np.isnan(x[:, 2]).all()


def test_a_backbone_pretrained_on_the_default_table_fine_tunes_a_task_naming_it(tmp_path, capsys):
    """Pre-trained without --table (visits, the only timed table), a task may still say visits.big."""
    shop(tmp_path, SCHEMA.split("tasks:")[0].replace("columns: {amount: numerical}}",
                                                      "columns: {amount: numerical}, labels: [big]}"))
    visits = pd.read_csv(tmp_path / "visits.csv")
    visits.assign(big=(visits["amount"] > 0).astype(int)).to_csv(tmp_path / "visits.csv", index=False)
    data, pre = str(tmp_path / "shop.yaml"), str(tmp_path / "pre")
    assert main(["pretrain", "--data", data, "--epochs", "1", "--out", pre, *TINY]) == 0
    capsys.readouterr()
    assert main(["finetune", "--init", pre, "--task", "visits.big", "--epochs", "1", "--out", str(tmp_path / "ft"),
                 *TINY]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ft" / "final.json").read_text())["task"] == "edge:big"  # the table's own rows
