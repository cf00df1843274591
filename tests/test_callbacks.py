"""Loggers and callbacks on the one fit loop: steps.csv, a callback of one's own from Python,
--quiet, and bad --log values."""
import csv
import sys

import pytest

import relssl
from relssl.cli import main
from relssl.train.callbacks import Callback
from tests.conftest import TINY

SMALL = dict(channels=16, heads=2, row_layers=1, gnn_layers=1, fanouts=[4, 2], batch_size=128,
             train_rows_per_epoch=600, eval_rows=300)


@pytest.mark.slow
def test_csv_logs_every_step_and_a_resume_keeps_the_earlier_ones(tmp_path, capsys):
    args = ["pretrain", "--epochs", "2", "--patience", "5", "--log", "csv", "--out", str(tmp_path / "r"), *TINY]
    assert main(args) == 0
    assert "epoch 2:" in capsys.readouterr().out
    with (tmp_path / "r" / "steps.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(e, s) for e in (1, 2) for s in range(5)]
    assert all(float(r["loss"]) > 0 for r in rows)
    assert main(["pretrain", "--out", str(tmp_path / "r"), "--resume", "--epochs", "3", "--no-progress"]) == 0
    with (tmp_path / "r" / "steps.csv").open() as f:
        again = list(csv.DictReader(f))
    assert again[:10] == rows and [int(r["epoch"]) for r in again[10:]] == [3] * 5


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, run_dir, first_epoch):
        self.events.append(("start", first_epoch))

    def on_step(self, epoch, step, metrics):
        self.events.append(("step", epoch, step, round(metrics["loss"], 6) > 0))

    def on_epoch(self, epoch, train, val, improved):
        self.events.append(("epoch", epoch, "loss" in val and "weight/mcm" in train))

    def on_end(self, best_epoch, error):
        self.events.append(("end", best_epoch, error))


@pytest.mark.slow
def test_a_callback_of_ones_own_hears_every_step_and_epoch(tmp_path):
    recorder = Recorder()
    relssl.pretrain("synthetic-aml", out=tmp_path / "r", epochs=2, patience=5, callbacks=[recorder], **SMALL)
    steps = [(e, s) for kind, *rest in recorder.events if kind == "step" for e, s, ok in [rest] if ok]
    assert recorder.events[0] == ("start", 1) and recorder.events[-1][0::2] == ("end", None)
    assert steps == [(e, s) for e in (1, 2) for s in range(5)]
    assert [ev for ev in recorder.events if ev[0] == "epoch"] == [("epoch", 1, True), ("epoch", 2, True)]


def test_quiet_leaves_results_only(tmp_path, capsys):
    assert main(["--quiet", "pretrain", "--epochs", "1", "--out", str(tmp_path / "q"), *TINY]) == 0
    out = capsys.readouterr().out
    assert "epoch 1:" not in out and "test metrics" in out


@pytest.mark.parametrize("value,needle", [
    ("wandb", "--log wandb: expected some of csv, tensorboard"),
    ("tensorboard", "pip install 'relssl[tensorboard]'"),  # on a machine without the package
])
def test_bad_loggers_are_one_line(tmp_path, capsys, monkeypatch, value, needle):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert main(["pretrain", "--epochs", "1", "--log", value, "--out", str(tmp_path / "b"), *TINY]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["pretrain", "--epochs", "2", "--patience", "5", "--log", "tensorboard", "--out", str(tmp_path / "t"),
                 *TINY]) == 0
    events = EventAccumulator(str(tmp_path / "t" / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("step/loss")) == 10 and len(events.Scalars("val/loss")) == 2
    assert "train/weight/mcm" in events.Tags()["scalars"]


def test_tensorboard_steps_count_on_across_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["pretrain", "--patience", "5", "--log", "tensorboard", "--out", str(tmp_path / "t"), *TINY]
    assert main([*args, "--epochs", "2"]) == 0
    assert main(["pretrain", "--out", str(tmp_path / "t"), "--resume", "--epochs", "3", "--no-progress"]) == 0
    events = EventAccumulator(str(tmp_path / "t" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, 16))


class Failing(Callback):
    def __init__(self):
        self.ended = None

    def on_epoch(self, epoch, train, val, improved):
        raise KeyboardInterrupt

    def on_end(self, best_epoch, error):
        self.ended = error


def test_callbacks_hear_how_training_ended(tmp_path):
    failing = Failing()
    with pytest.raises(KeyboardInterrupt):
        relssl.pretrain("synthetic-aml", out=tmp_path / "f", epochs=2, callbacks=[failing], **SMALL)
    assert isinstance(failing.ended, KeyboardInterrupt)


def test_main_leaves_logging_as_it_found_it(tmp_path):
    import logging

    logger = logging.getLogger("relssl")
    before = (logger.level, logger.propagate, list(logger.handlers))
    assert main(["--quiet", "pretrain", "--epochs", "1", "--out", str(tmp_path / "q"), *TINY]) == 0
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_feat2vec_refuses_a_bad_logger_before_it_writes(tmp_path, capsys):
    assert main(["feat2vec", "--log", "wandb", "--out", str(tmp_path / "f")]) == 2
    assert "--log wandb: expected some of csv, tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
