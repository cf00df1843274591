"""The input pipeline (relssl.train.pipeline): batches built ahead in threads are the batches built
in the loop, errors and Ctrl-C leave no thread behind; and --precision's autocast paths."""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from relssl.cli import main
from relssl.train.pipeline import Prefetcher
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def input_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("relssl-input")]


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_steps_come_in_order_whatever_the_workers(workers):
    def make(step):
        time.sleep(0.002 * (step % 3))  # later steps may finish first
        return step * step

    assert list(Prefetcher(make, 20, workers)) == [s * s for s in range(20)]
    assert not input_threads()


def test_builds_run_ahead_but_never_more_than_depth():
    started = []
    pipeline = iter(Prefetcher(lambda step: started.append(step) or step, 50, workers=2, depth=3))
    assert next(pipeline) == 0
    time.sleep(0.05)
    assert max(started) == 3  # the consumed step and depth ahead, no more
    pipeline.close()
    assert not input_threads()


def test_an_error_in_a_worker_is_raised_at_its_step_and_stops_every_thread():
    def make(step):
        if step == 5:
            raise ValueError("bad step 5")
        return step

    seen = []
    with pytest.raises(ValueError, match="bad step 5"):
        for value in Prefetcher(make, 20, workers=2):
            seen.append(value)
    assert seen == [0, 1, 2, 3, 4] and not input_threads()


@pytest.fixture(scope="module")
def aml(tmp_path_factory):
    out = tmp_path_factory.mktemp("aml")
    assert main(["generate", "aml", "--rows", "3000", "--seed", "2", "--out", str(out)]) == 0
    return str(out / "Synthetic_Trans.csv")


def run(aml, out, *extra) -> tuple[list[dict], dict]:
    assert main(["pretrain", "--data", aml, "--objectives", "mcm,lp", "--epochs", "2", "--patience", "5",
                 "--out", str(out), *TINY, *extra]) == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    timing = {"seconds", "rows_per_s", "peak_rss_mib"}
    return [{k: v for k, v in r.items() if k not in timing} for r in history], json.loads((out / "final.json").read_text())


@pytest.mark.slow
def test_the_same_seed_gives_the_same_run_with_0_1_or_2_workers(aml, tmp_path):
    runs = [run(aml, tmp_path / f"w{w}", "--workers", str(w)) for w in (0, 1, 2)]
    assert runs[0] == runs[1] == runs[2]
    assert not input_threads()


def test_ctrl_c_mid_epoch_leaves_no_input_thread(aml, tmp_path, monkeypatch, capsys):
    from relssl.train.pretrain import Pretrainer

    original = Pretrainer.train_step

    def interrupted(self, rows, epoch, step, built=None):
        if step == 2:
            raise KeyboardInterrupt
        return original(self, rows, epoch, step, built)

    monkeypatch.setattr(Pretrainer, "train_step", interrupted)
    assert main(["pretrain", "--data", aml, "--out", str(tmp_path / "r"), "--workers", "2", *TINY]) == 130
    assert "interrupted" in capsys.readouterr().err and not input_threads()


@pytest.mark.slow
def test_bf16_autocast_on_the_cpu_trains_as_fp32_does(aml, tmp_path):
    fp32, _ = run(aml, tmp_path / "fp32")
    bf16, _ = run(aml, tmp_path / "bf16", "--precision", "bf16")
    val = [(a["loss"], b["loss"]) for a, b in zip(fp32, bf16) if a["split"] == "val"]
    assert all(abs(a - b) / a < 0.05 for a, b in val), val  # bf16 keeps 8 bits of mantissa
    assert val[1][1] < val[0][1]  # and learns


def test_fp16_needs_cuda_and_precision_is_checked(aml, tmp_path, capsys):
    assert main(["pretrain", "--data", aml, "--out", str(tmp_path / "a"), "--precision", "fp16", "--device", "cpu",
                 *TINY]) == 2
    assert "--precision fp16 needs a CUDA device" in capsys.readouterr().err
    assert main(["pretrain", "--data", aml, "--out", str(tmp_path / "b"), "--precision", "fp8", *TINY]) == 2
    assert "--precision fp8: expected one of fp32, bf16, fp16" in capsys.readouterr().err
    assert main(["pretrain", "--data", aml, "--out", str(tmp_path / "c"), "--workers", "-1", *TINY]) == 2
    assert "--workers -1" in capsys.readouterr().err


def test_bf16_autocast_runs_every_objective_and_a_database():
    import math

    from relssl.data.prepare import prepare
    from relssl.data.splits import TRAIN, VAL
    from relssl.objectives import OBJECTIVES
    from relssl.train.pretrain import Pretrainer
    from tests.test_database_tasks import ratings_database, trainer_for
    from tests.test_objectives import community_toy, small_config

    community = prepare(community_toy())
    events = Pretrainer(small_config(list(OBJECTIVES), precision="bf16"), community)
    database = trainer_for(ratings_database(), objectives=["mcm", "lp"], precision="bf16")
    for trainer in (events, database):
        loss, _ = trainer.train_step(trainer.prep.rows(TRAIN)[:64], 1, 0)
        assert math.isfinite(loss)
        assert all(math.isfinite(v) for v in trainer.evaluate(VAL).values())


def test_fp16_refuses_combiners_its_loss_scale_would_skew():
    from relssl.errors import RelsslError
    from relssl.train.pretrain import PretrainConfig

    for combiner in ("uw", "moco", "cagrad"):
        with pytest.raises(RelsslError, match=f"--precision fp16 takes --combiner sum, weighted, pcgrad .*skew {combiner}"):
            PretrainConfig(objectives=["mcm", "mv"], combiner=combiner, precision="fp16").validate()
    PretrainConfig(objectives=["mcm", "mv"], combiner="pcgrad", precision="fp16").validate()



def test_input_threads_select_the_runs_gpu_by_its_index(monkeypatch):
    """torch.cuda.set_device needs an index, which --device cuda does not give (the first GPU run
    failed here): the threads select the current device's."""
    from types import SimpleNamespace

    from relssl.train.pretrain import Pretrainer

    chosen = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert Pretrainer.thread_device(SimpleNamespace(device=torch.device("cpu"))) is None
    Pretrainer.thread_device(SimpleNamespace(device=torch.device("cuda")))()
    Pretrainer.thread_device(SimpleNamespace(device=torch.device("cuda", 1)))()
    assert chosen == [3, 1]


def poisoned_trainer(objectives: list[str], **kw):
    """A toy trainer whose loss is NaN at the steps in its ``poisoned`` set (counted from 0 as
    ``steps_seen``)."""
    from relssl.data.prepare import prepare
    from relssl.train.pretrain import Pretrainer
    from tests.test_objectives import community_toy, small_config

    trainer = Pretrainer(small_config(objectives, **kw), prepare(community_toy()))
    tables_step = trainer.tables_step

    def step_with_nan(rows, split, gens, batches=None):
        loss, outputs = tables_step(rows, split, gens, batches)
        if trainer.steps_seen in trainer.poisoned:
            for out in outputs:
                out.loss = out.loss * float("nan")
            loss = loss * float("nan")
        trainer.steps_seen += 1
        return loss, outputs

    trainer.steps_seen, trainer.poisoned, trainer.tables_step = 0, set(), step_with_nan
    return trainer


def test_a_non_finite_loss_makes_no_update_and_stops_the_epoch_naming_its_step():
    """The fused optimizer skips a non-finite loss's update on the device (no host read inside the
    step); the loop reads each loss a step late and stops at the one that diverged."""
    from relssl.errors import RelsslError
    from relssl.data.splits import TRAIN

    trainer = poisoned_trainer(["mcm"])
    assert trainer.optimizer.param_groups[0]["fused"]
    trainer.poisoned = {2}
    rows = trainer.prep.rows(TRAIN)[:64]
    trainer.train_step(rows, 1, 0)
    trainer.train_step(rows, 1, 1)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    steps = [s["step"].clone() for s in trainer.optimizer.state.values()]
    loss, _ = trainer.train_step(rows, 1, 2)  # the poisoned step: no update, no step counted
    assert not torch.isfinite(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert all(torch.equal(a, s["step"]) for a, s in zip(steps, trainer.optimizer.state.values()))
    assert not hasattr(trainer.optimizer, "found_inf")  # nothing left for another optimizer step to skip
    trainer.train_step(rows, 1, 3)
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))  # a finite one updates

    trainer.steps_seen, trainer.poisoned = 0, {1}
    trainer.cfg.train_rows_per_epoch = 4 * trainer.cfg.batch_size
    with pytest.raises(RelsslError, match=r"^training diverged: loss is nan at epoch 2, step 1; try a lower --lr$"):
        trainer.train_epoch(2, progress=False)


@pytest.mark.parametrize("combiner", ["moco", "pcgrad", "cagrad", "uw"])
def test_every_combiner_stops_at_a_non_finite_loss_with_the_divergence_message(combiner):
    """MoCo's simplex projection cannot take NaN gradients: combiners that read per-task
    gradients check the loss before their backward, as before."""
    from relssl.errors import RelsslError

    trainer = poisoned_trainer(["mcm", "mv"], combiner=combiner)
    trainer.poisoned = {1}
    trainer.cfg.train_rows_per_epoch = 3 * trainer.cfg.batch_size
    with pytest.raises(RelsslError, match=r"^training diverged: loss is nan at epoch 1, step 1"):
        trainer.train_epoch(1, progress=False)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
