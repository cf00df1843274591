import pytest
import torch

from relssl.data.prepare import prepare
from relssl.data.splits import TRAIN, VAL
from relssl.nn.backbone import ModelConfig
from relssl.train.pretrain import PretrainConfig, Pretrainer
from tests.conftest import toy_relational


def small_config(**kw) -> PretrainConfig:
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=1, fanouts=[4], dropout=0.0)
    return PretrainConfig(data="toy", batch_size=128, lr=3e-3, device="cpu", eval_rows=600, model=model, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("graph", [True, False])
@pytest.mark.parametrize("mask", ["replace", "remove"])
def test_mcm_learns_cells_that_predict_each_other(graph, mask):
    prep = prepare(toy_relational(3000, graph=graph))
    trainer = Pretrainer(small_config(mask=mask), prep)
    before = trainer.evaluate(VAL)
    for epoch in range(1, 5):
        trainer.train_epoch(epoch, progress=False)
    after = trainer.evaluate(VAL)
    assert after["mcm/loss"] < 0.6 * before["mcm/loss"]
    # 'b' copies 'a' and 'x' follows 'a'; 'c' is noise: categorical ACC can reach (1 + 1 + 1/4) / 3.
    assert after["mcm/acc"] > 0.6 > before["mcm/acc"]
    assert after["mcm/rmse"] < 0.5 < before["mcm/rmse"]


def test_evaluation_is_reproducible_and_seed_row_is_hidden():
    prep = prepare(toy_relational(2000))
    a = Pretrainer(small_config(seed=3), prep)
    b = Pretrainer(small_config(seed=3), prep)
    assert a.evaluate(VAL) == b.evaluate(VAL)
    rows = prep.rows(TRAIN)[:64]
    batch = a.builders[TRAIN](rows, torch.Generator().manual_seed(0))
    sub = batch.graph.sub
    assert not (sub.edge_id == rows[sub.node_seed[sub.edge_index[1]]]).any()
    assert (prep.split[sub.edge_id.numpy()] == TRAIN).all()
