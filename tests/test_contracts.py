"""The contract every registered pretext task, combiner, reader and GNN layer keeps, checked for
each entry of the registries (scikit-learn's check_estimator habit): a new entry gets these for
free."""
import json
import math
import sqlite3
from contextlib import closing

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from relssl.data.aml_generator import write_aml
from relssl.data.cache import load_prepared
from relssl.data.datasets import load_dataset, resolve
from relssl.data.prepare import prepare
from relssl.data.readers import READERS
from relssl.errors import RelsslError
from relssl.data.splits import TRAIN, VAL
from relssl.objectives import reference_key
from relssl.multitask import COMBINERS, build_combiner
from relssl.nn.backbone import ModelConfig
from relssl.nn.gnn import CONVS
from relssl.nn.row_encoder import ROW_ENCODERS
from relssl.multitask.base import combined_backward
from relssl import objectives
from relssl.objectives import OBJECTIVES
from relssl.objectives.base import BuildContext, Objective, TaskOutput
from relssl.train.pretrain import Pretrainer
from tests.test_objectives import community_toy, small_config, train


# Self-supervised metrics that must come with their trivial reference (docs/pretext-tasks.md).
REFERENCED = {"acc", "rmse", "rmse_raw", "emb_cos", "mrr", "hits@1", "hits@10", "top1", "col_acc"}


@pytest.fixture(scope="module")
def community():
    return prepare(community_toy())


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_contract(community, name, tmp_path):
    trainer = Pretrainer(small_config([name], seed=2), community)
    before = trainer.evaluate(VAL)
    # metrics are named <task>/<metric>, finite; every metric with a reference has it
    assert before and all(k.startswith(f"{name}/") for k in before if k != "loss"), before
    assert all(math.isfinite(v) for v in before.values()), before
    scored = [k for k in before if k.count("/") == 1 and k.split("/")[1] in REFERENCED]
    assert all(reference_key(k) in before for k in scored), [k for k in scored if reference_key(k) not in before]
    # a step updates the model with a finite loss
    loss, _ = trainer.train_step(community.rows(TRAIN)[:128], 1, 0)
    assert math.isfinite(loss)
    # it learns the learnable toy
    _, after = train(trainer, 3)
    assert after[f"{name}/loss"] < before[f"{name}/loss"], (before, after)
    # its state round-trips through a checkpoint: a restored trainer reports the same numbers
    torch.save(trainer.state(), tmp_path / "c.pt")
    restored = Pretrainer(small_config([name], seed=2), community)
    restored.load_state(torch.load(tmp_path / "c.pt", weights_only=True))
    assert restored.evaluate(VAL) == trainer.evaluate(VAL)
    # one seed, one result
    assert Pretrainer(small_config([name], seed=2), community).evaluate(VAL) == before


@pytest.mark.parametrize("encoder", [e for e in ROW_ENCODERS if e != "ft-transformer"])
def test_every_objective_trains_with_each_light_row_encoder(community, encoder):
    """The FT-Transformer runs the objective contract above; the dense encoders run every task
    together: finite metrics with their references, and every task's loss falls on the toy."""
    from dataclasses import replace

    cfg = small_config(list(OBJECTIVES), seed=2)
    cfg.model = replace(cfg.model, row_encoder=encoder)
    trainer = Pretrainer(cfg, community)
    blocks = {type(m).__name__ for m in trainer.model.row.body.modules()}
    assert ("FCResidualBlock" in blocks) == (encoder == "resnet") and "MultiheadAttention" not in blocks
    before, after = train(trainer, 3)
    assert all(math.isfinite(v) for v in after.values()), after
    for name in OBJECTIVES:
        assert after[f"{name}/loss"] < before[f"{name}/loss"], (name, before, after)


def test_an_unknown_row_encoder_is_one_line(community):
    from dataclasses import replace

    cfg = small_config(["mcm"])
    cfg.model = replace(cfg.model, row_encoder="tabnet")
    with pytest.raises(RelsslError, match="--row-encoder tabnet: expected one of ft-transformer, mlp, resnet"):
        Pretrainer(cfg, community)


def toy_tasks():
    torch.manual_seed(0)
    trunk, heads = nn.Linear(4, 8), nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])
    x = torch.randn(64, 4)
    targets = [x[:, :1], -x[:, :1], x[:, 1:2]]  # the first two conflict

    def losses():
        z = torch.relu(trunk(x))
        return [(h(z) - t).pow(2).mean() for h, t in zip(heads, targets)]

    return trunk, heads, losses


@pytest.mark.parametrize("name", list(COMBINERS))
def test_combiner_contract(name, tmp_path):
    weights = [1.0, 0.5, 0.25] if name == "weighted" else None
    combiner = build_combiner(name, 3, weights)
    trunk, heads, losses = toy_tasks()
    params = [*trunk.parameters(), *heads.parameters(), *combiner.parameters()]
    opt = torch.optim.SGD(params, lr=0.05)
    start = sum(l.item() for l in losses())
    for step in range(30):
        opt.zero_grad()
        combined_backward(combiner, losses(), list(trunk.parameters()), [*heads.parameters(), *combiner.parameters()],
                          torch.Generator().manual_seed(step))
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in params)
        opt.step()
    assert sum(l.item() for l in losses()) < start  # the three tasks together improve
    w = combiner.weights()
    assert w.shape == (3,) and torch.isfinite(w).all() and (w >= 0).all()
    # state round trip: a restored combiner makes the same next update
    torch.save(combiner.state_dict(), tmp_path / "c.pt")
    restored = build_combiner(name, 3, weights)
    restored.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    grads = []
    for c in (combiner, restored):
        for p in params:
            p.grad = None
        combined_backward(c, losses(), list(trunk.parameters()), list(heads.parameters()),
                          torch.Generator().manual_seed(99))
        grads.append([p.grad.clone() for p in trunk.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def aml_example(folder):
    return write_aml(folder, rows=600, seed=3)[0]


def amazon_example(folder):
    path = folder / "reviews.json"
    path.write_text("".join(json.dumps({"overall": float(1 + i % 5), "verified": bool(i % 2), "reviewerID": f"U{i % 7}",
                                        "asin": f"I{i % 3}", "reviewText": f"text {i % 5}",
                                        "unixReviewTime": 1441324800 + i}) + "\n" for i in range(40)))
    return path


def schema_example(folder):
    rows = "".join(f"{i},{'xyz'[i % 3]},{i % 5},{1600000000 + 60 * i}\n" for i in range(60))
    (folder / "events.csv").write_text("n,c,key,t\n" + rows)
    path = folder / "schema.yaml"
    path.write_text("events:\n  path: events.csv\n  time: {column: t, unit: s}\n"
                    "  source: key\n  target: key\n  columns: {n: numerical, c: categorical}\n")
    return path


def sqlite_example(folder):
    path = folder / "events.db"
    with closing(sqlite3.connect(path)) as con:
        con.executescript("CREATE TABLE people (id INTEGER PRIMARY KEY);"
                          "CREATE TABLE events (n REAL, c TEXT, t TIMESTAMP, a INTEGER REFERENCES people(id), "
                          "b INTEGER REFERENCES people(id));")
        con.executemany("INSERT INTO people VALUES (?)", [(i,) for i in range(5)])
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                        [(i * 0.5, "xyz"[i % 3], f"2020-09-13 12:{i:02d}:00", i % 5, (i + 1) % 5) for i in range(60)])
        con.commit()
    return path


# One small file per reader: a reader without an example fails test_every_reader_has_an_example.
READER_EXAMPLES = {"ibm_aml": aml_example, "amazon": amazon_example, "schema": schema_example,
                   "sqlite": sqlite_example}


def test_every_reader_has_an_example():
    assert set(READERS) == set(READER_EXAMPLES)


@pytest.mark.parametrize("name", list(READERS))
def test_reader_contract(name, tmp_path):
    path = READER_EXAMPLES[name](tmp_path)
    source = resolve(str(path))
    assert source.reader is READERS[name]  # --data routes its own format to it
    data = load_dataset(str(path))
    assert data.num_events > 0 and set(data.col_stypes) <= set(data.events.columns)
    assert len(data.time) == data.num_events and (data.time[1:] >= data.time[:-1]).all()
    assert path in source.files() and all(f.is_file() for f in source.files())
    if source.cacheable:  # the cache holds what preparing in memory gives, and serves it again
        cached, hit = load_prepared(str(path), cache_dir=tmp_path / "cache")
        assert not hit and load_prepared(str(path), cache_dir=tmp_path / "cache")[1]
        fresh = prepare(data)
        assert [c.name for c in cached.events.columns] == [c.name for c in fresh.events.columns]
        for split in range(3):
            assert torch.equal(cached.rows(split), fresh.rows(split))


def test_an_unknown_input_names_every_reader(tmp_path):
    with pytest.raises(RelsslError) as err:
        load_dataset(str(tmp_path / "missing.xyz"))
    assert all(reader.formats in str(err.value) for reader in READERS.values())


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_contract(community, name, reverse, tmp_path):
    """Link prediction on the community toy needs the neighbourhood: with each registered layer
    (and with reverse message passing) it learns, the layer's own weights move, the state
    round-trips and one seed gives one result."""
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=1, fanouts=[4], dropout=0.0, gnn=name,
                        reverse_mp=reverse)
    cfg = lambda: small_config(["lp"], seed=1, model=model)  # noqa: E731
    trainer = Pretrainer(cfg(), community)
    conv = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if ".conv" in k}
    assert conv, "the backbone holds no convolution weights"
    before, after = train(trainer, 2)
    assert after["lp/loss"] < before["lp/loss"], (before, after)
    moved = [k for k, v in trainer.model.named_parameters() if k in conv and not torch.equal(v, conv[k])]
    assert len(moved) == len(conv), sorted(set(conv) - set(moved))[:3]
    torch.save(trainer.state(), tmp_path / "c.pt")
    restored = Pretrainer(cfg(), community)
    restored.load_state(torch.load(tmp_path / "c.pt", weights_only=True))
    assert restored.evaluate(VAL) == trainer.evaluate(VAL)
    assert Pretrainer(cfg(), community).evaluate(VAL) == before


class TargetDegree(Objective):
    """docs/architecture.md's worked example, kept here so that the example stays true."""

    name = "deg"
    needs_graph = True
    OPTIONS = {"deg_smoothing": (0.0, "DEG: label smoothing")}

    @classmethod
    def build(cls, ctx: BuildContext) -> "TargetDegree":
        return cls(ctx.prep, ctx.channels, ctx.options["deg_smoothing"])

    def __init__(self, prep, channels, smoothing):
        super().__init__()
        degree = prep.dst[prep.rows(TRAIN)].bincount(minlength=prep.num_entities)  # training events only
        label = (degree + 1.0).log2().long().clamp(max=15)[prep.dst]  # per event: its target's bucket
        self.register_buffer("label", label, persistent=False)
        self.majority = int(label[prep.rows(TRAIN)].bincount().argmax())  # the trivial reference
        self.head, self.smoothing = nn.Linear(2 * channels, 16), smoothing

    def forward(self, model, batch, graph, generator):
        logits = self.head(graph)  # the row's endpoints in the graph, without the row itself
        truth = self.label[batch.rows]
        loss = F.cross_entropy(logits, truth, label_smoothing=self.smoothing)
        return TaskOutput(loss, {"correct": float((logits.argmax(1) == truth).sum()),
                                 "ref": float((truth == self.majority).sum()), "count": len(truth)})

    def metrics(self, sums):
        return {"loss": sums["loss"] / sums["batches"], "acc": sums["correct"] / sums["count"],
                "acc_ref": sums["ref"] / sums["count"]}


def test_the_documented_new_task_is_one_class_and_one_registry_line(community, tmp_path, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "deg", TargetDegree)
    monkeypatch.setitem(objectives.OPTIONS, "deg_smoothing", 0.0)
    test_objective_contract(community, "deg", tmp_path)


def test_the_peer_bench_times_relssl_on_the_wide_table(shared_data):
    from relssl.bench_peers import PEERS, run_peer

    result = run_peer("relssl:mlp-16", 2, 64)
    assert result["library"] == "relssl (mlp, 16 ch, 1 layers)" and result["params"] > 10_000
    assert result["rows_per_s"] > 0 and "pytorch-tabular" in PEERS
    with pytest.raises(RelsslError, match="unknown peer widedeep"):
        run_peer("widedeep", 2, 64)


def test_the_peer_bench_names_an_unknown_library_in_one_line(capsys):
    from relssl.cli import main

    assert main(["bench", "--peers", "--libraries", "relssl:mlp,widedeep"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--libraries widedeep: unknown" in err and "pytorch-widedeep:denoising" in err
    assert main(["bench", "--libraries", "relssl:mlp"]) == 2
    assert "--libraries picks libraries of --peers" in capsys.readouterr().err


def test_the_peer_bench_times_steps_within_an_epoch_alike_for_every_library():
    from relssl.bench_peers import steady_rate

    # (epoch, end time, rows): an epoch's first step and the gap between epochs are not timed
    ends = [(1, 0.0, 10), (1, 1.0, 10), (1, 2.0, 5), (2, 10.0, 10), (2, 12.0, 10)]
    assert steady_rate(ends) == pytest.approx((10 + 5 + 10) / (1 + 1 + 2))
    with pytest.raises(RelsslError, match="no two steps in one epoch"):
        steady_rate([(1, 0.0, 10), (2, 5.0, 10)])


@pytest.mark.slow
def test_the_recsys_bench_trains_mmssl_at_the_originals_shapes(shared_data, tmp_path, capsys):
    import json
    import math

    from relssl.cli import main

    assert main(["bench", "--recsys", "--steps", "1", "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "19,445 users, 7,050 items; random 4096-d image and 1024-d text features" in out
    assert "| steps_per_epoch | 117 |" in out  # 119,674 training interactions / 1,024 + 1
    result = json.loads((tmp_path / "r.json").read_text())
    assert math.isfinite(result["loss"]) and result["step_s"] > 0 and result["refresh_s"] > 0
