"""The contract every registered pretext task and combiner keeps, checked for each entry of the
registries (scikit-learn's check_estimator habit): a new task or combiner gets these for free."""
import math

import pytest
import torch
from torch import nn

from relssl.data.prepare import prepare
from relssl.data.splits import TRAIN, VAL
from relssl.metrics import reference_key
from relssl.multitask import COMBINERS, build_combiner
from relssl.multitask.base import combined_backward
from relssl.objectives import OBJECTIVES
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
