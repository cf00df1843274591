"""The one fit loop: epochs, validation, early stopping, best weights, checkpoint and resume.

Pretrain, feat2vec, finetune and recsys each bring a trainer (what one epoch and one validation
are); this loop owns everything around them, so all four stop, save and resume by one rule:
train an epoch, validate, keep the weights when the selection metric improved, write the
history and a checkpoint of the full state, and stop after ``patience`` epochs without
improvement. Every draw of an epoch comes from (seed, stream, epoch), so a run resumed from its
checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from relssl.errors import RelsslError, out_of_memory
from relssl.logs import LOG, info
from relssl.nn.optim import load_optimizer
from relssl.train.callbacks import Callback
from relssl.train.distributed import World
from relssl.train.run_folder import CHECKPOINT, CONFIG, RunFolder


class Trainer(Protocol):
    device: torch.device

    def train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        """One pass over the training rows; returns at least ``loss`` and ``seconds``."""

    def validate(self) -> dict[str, float]:
        """Metrics on the fixed validation rows."""

    def weights(self) -> torch.nn.Module:
        """What model.safetensors holds."""

    def state(self) -> dict:
        """Everything a resumed run needs (weights, optimiser, combiner), tensors only."""

    def load_state(self, state: dict) -> None: ...


class OneModel:
    """``weights``, ``state`` and ``load_state`` of a trainer holding one ``model`` and one
    ``optimizer`` (feat2vec, finetune, recsys; pre-training adds objectives and a combiner)."""

    def weights(self) -> torch.nn.Module:
        return self.model

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer(self.optimizer, state["optimizer"])


@dataclass
class FitResult:
    best_epoch: int
    history: list[dict]


def report_step(trainer, epoch: int, step: int, loss: float) -> None:
    """A trainer's step loss, to the fit loop's callbacks (``step_hook``; none outside ``fit``)."""
    hook = getattr(trainer, "step_hook", None)
    if hook is not None:
        hook(epoch, step, {"loss": loss})


def fit(trainer: Trainer, run: RunFolder, epochs: int, patience: int, metric: str, maximize: bool = False,
        resume: bool = False, log=info, progress: bool = True, world: World = World(),
        callbacks: list[Callback] = ()) -> FitResult:
    """Train up to ``epochs``, selecting on validation ``metric``; model.safetensors ends up
    holding the best epoch's weights. With ``resume`` the loop continues from the run's
    checkpoint (from epoch 1 when the run stopped before its first one). ``callbacks``
    (relssl.train.callbacks) hear every step and epoch, on the main process."""
    sign = -1.0 if maximize else 1.0  # the loop minimises sign * metric
    first, best, best_epoch, bad_epochs, history = 1, math.inf, 0, 0, []
    if resume and (run / CHECKPOINT).exists():
        ckpt = run.load_checkpoint(trainer.device)
        try:
            trainer.load_state(ckpt["state"])
        except RelsslError:
            raise
        except Exception as err:  # the model config.yaml builds is not the one the checkpoint holds
            if out_of_memory(err):
                raise
            raise RelsslError(f"{run / CHECKPOINT} does not match {run / CONFIG} ({mismatch(err)}); the run folder is "
                              f"damaged or was edited; start the run anew in another folder") from None
        first, best, best_epoch, bad_epochs = ckpt["epoch"] + 1, ckpt["best"], ckpt["best_epoch"], ckpt["bad_epochs"]
        history = [r for r in run.history() if r["epoch"] <= ckpt["epoch"]]
    run.write_history(history)
    callbacks = list(callbacks) if world.is_main and run.writer else []
    started, error = [], None
    try:
        for callback in callbacks:
            callback.on_start(run.path, first)
            started.append(callback)
        trainer.step_hook = (lambda e, s, m: [c.on_step(e, s, m) for c in callbacks]) if callbacks else None
        for epoch in range(first, epochs + 1):
            if bad_epochs >= patience:
                break
            train = trainer.train_epoch(epoch, progress)
            val = trainer.validate()
            history += [{"epoch": epoch, "split": "train", **train}, {"epoch": epoch, "split": "val", **val}]
            score = sign * val[metric]  # metrics are reduced over ranks: every rank decides alike
            improved = score < best
            if improved:
                best, best_epoch, bad_epochs = score, epoch, 0
                run.save_weights(trainer.weights())
            else:
                bad_epochs += 1
            run.write_history(history)
            run.save_checkpoint({"state": trainer.state(), "epoch": epoch, "best": best, "best_epoch": best_epoch,
                                 "bad_epochs": bad_epochs})
            if world.is_main:
                log(epoch_line(epoch, train, metric, val[metric], improved))
                LOG.debug(f"epoch {epoch}: train {train}; val {val}")
            for callback in callbacks:
                callback.on_epoch(epoch, train, val, improved)
    except BaseException as err:
        error = err
        raise
    finally:
        trainer.step_hook = None
        closing = None
        for callback in started:  # each closes, whatever another's on_end raises; the run's error wins
            try:
                callback.on_end(best_epoch, error)
            except Exception as err:
                closing = closing or err
        if closing is not None and error is None:
            raise closing
    world.barrier()  # the best weights are on disk before any rank reads them
    if best_epoch == 0:
        raise RelsslError(f"validation {metric} was never a finite number ({history[-1].get(metric) if history else 'no epoch ran'}); "
                          f"the training diverged (try a lower --lr) or the validation rows cannot score it")
    return FitResult(best_epoch, history)


def mismatch(err: Exception) -> str:
    """The first difference torch names ("size mismatch for fuse.0.bias: ..."), not its header."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return (lines[0].rstrip(".") if lines else type(err).__name__)[:160]


def epoch_line(epoch: int, train: dict, metric: str, value: float, improved: bool) -> str:
    speed = f"{train['rows_per_s']:.0f} rows/s" if "rows_per_s" in train else f"{train['seconds']:.1f} s"
    if "peak_rss_mib" in train:
        speed += f", peak RSS {train['peak_rss_mib']:.0f} MiB"
    return f"epoch {epoch}: train loss {train['loss']:.4f} ({speed}), val {metric} {value:.4f}{' *' if improved else ''}"
