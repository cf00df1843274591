"""The learning-rate schedule: hand-computed values, and that the optimizer's update follows it."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from relssl.cli import main
from relssl.nn.optim import adamw, scheduled_lr, set_lr
from tests.conftest import TINY


def test_constant_without_warmup_is_the_base_rate():
    assert {scheduled_lr(0.01, "constant", step, 10, 5, 0.0) for step in range(50)} == {0.01}


def test_warmup_rises_linearly_then_holds():
    # 2 epochs of 10 steps: step k trains at (k + 1) / 20 of the base rate, from step 19 on at all of it
    assert [scheduled_lr(1.0, "constant", k, 10, 5, 2.0) for k in (0, 9, 19, 30)] == [0.05, 0.5, 1.0, 1.0]


def test_cosine_decays_from_the_base_rate_to_zero_at_the_last_epoch():
    # 4 epochs of 10 steps, no warm-up: progress k / 40
    assert scheduled_lr(2.0, "cosine", 0, 10, 4, 0.0) == 2.0
    assert scheduled_lr(2.0, "cosine", 20, 10, 4, 0.0) == pytest.approx(1.0)
    assert scheduled_lr(2.0, "cosine", 30, 10, 4, 0.0) == pytest.approx(1 + math.cos(0.75 * math.pi))
    assert 0 < scheduled_lr(2.0, "cosine", 39, 10, 4, 0.0) < 0.01
    assert scheduled_lr(2.0, "cosine", 40, 10, 4, 0.0) == 0.0  # beyond --epochs: nothing left


def test_cosine_starts_after_the_warmup():
    # 1 warm-up epoch of 10 steps, then the cosine over the remaining 30 steps: its middle is step 25
    assert scheduled_lr(1.0, "cosine", 9, 10, 4, 1.0) == 1.0
    assert scheduled_lr(1.0, "cosine", 25, 10, 4, 1.0) == pytest.approx(0.5)


def test_set_lr_drives_the_update():
    w = torch.nn.Parameter(torch.ones(3))
    opt = adamw([w], lr=0.1, weight_decay=0.01)
    cfg = SimpleNamespace(lr=0.1, lr_schedule="cosine", warmup_epochs=0.0, epochs=1)
    w.grad = torch.ones(3)
    assert set_lr(opt, cfg, epoch=2, step=0, steps_per_epoch=4) == 0.0  # past the schedule's end
    opt.step()
    assert torch.equal(w.detach(), torch.ones(3))  # lr 0: neither the step nor the decay moves it
    assert set_lr(opt, cfg, epoch=1, step=0, steps_per_epoch=4) == 0.1
    opt.step()
    assert (w.detach() < 1).all()


def test_a_cosine_run_logs_each_epochs_last_learning_rate(tmp_path):
    out = tmp_path / "r"
    # TINY: 600 training rows an epoch in batches of 128, so 5 steps; the last step of epoch e is step 5e - 1
    assert main(["pretrain", "--epochs", "3", "--patience", "5", "--lr", "0.01", "--lr-schedule", "cosine",
                 "--out", str(out), *TINY]) == 0
    lrs = [r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]
    assert lrs == pytest.approx([0.005 * (1 + math.cos(math.pi * (5 * e - 1) / 15)) for e in (1, 2, 3)])


def test_finetuning_follows_the_schedule_too(tmp_path):
    out = tmp_path / "f"  # laundering common enough that the validation rows hold positives
    assert main(["generate", "aml", "--rows", "3000", "--seed", "1", "--laundering-rate", "0.05",
                 "--out", str(tmp_path)]) == 0
    assert main(["finetune", "--data", str(tmp_path / "Synthetic_Trans.csv"), "--init", "scratch", "--epochs", "2",
                 "--patience", "5", "--lr", "0.01", "--lr-schedule", "cosine", "--out", str(out), *TINY]) == 0
    lrs = [r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]
    steps = -(-600 // 128)  # --train-rows-per-epoch 600 in batches of 128
    assert lrs == pytest.approx([0.005 * (1 + math.cos(math.pi * (steps * e - 1) / (2 * steps))) for e in (1, 2)])
