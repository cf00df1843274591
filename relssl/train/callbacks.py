"""Hooks into the one fit loop (relssl.train.loop.fit) for loggers of one's own (W&B, a
dashboard) and the two built in: ``--log csv`` (every step's loss in steps.csv) and ``--log
tensorboard`` (TensorBoard event files under tensorboard/: per-step loss, per-epoch training and
validation metrics, the combiner's task weights; the ``tensorboard`` extra). Callbacks run on
the main process only."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from relssl.errors import RelsslError
from relssl.files import write_text

LOGGERS = ("csv", "tensorboard")


class Callback:
    """Override what you need; every hook receives plain numbers."""

    def on_start(self, run_dir: Path, first_epoch: int) -> None:
        """Before training; ``first_epoch`` > 1 when a run resumes."""

    def on_step(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """After each optimiser step: at least ``loss``."""

    def on_epoch(self, epoch: int, train: dict[str, float], val: dict[str, float], improved: bool) -> None:
        """After each epoch's validation."""

    def on_end(self, best_epoch: int, error: BaseException | None) -> None:
        """After the last epoch, or when training stopped on ``error`` (an exception, Ctrl-C)."""


class CSVLogger(Callback):
    """steps.csv in the run folder: epoch, step, loss (a resumed run keeps the steps before it)."""

    def on_start(self, run_dir: Path, first_epoch: int) -> None:
        self.path = Path(run_dir) / "steps.csv"
        kept = []
        if first_epoch > 1 and self.path.exists():
            with self.path.open() as f:
                kept = [row for row in csv.DictReader(f) if int(row["epoch"]) < first_epoch]
        self.file = self.path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(["epoch", "step", "loss"])
        self.writer.writerows([row["epoch"], row["step"], row["loss"]] for row in kept)

    def on_step(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.writer.writerow([epoch, step, f"{metrics['loss']:.6g}"])

    def on_epoch(self, epoch: int, train: dict, val: dict, improved: bool) -> None:
        self.file.flush()

    def on_end(self, best_epoch: int, error: BaseException | None) -> None:
        self.file.close()


class TensorBoardLogger(Callback):
    """TensorBoard event files in the run folder's tensorboard/ (``tensorboard --logdir RUN``)."""

    def __init__(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RelsslError("--log tensorboard needs the tensorboard package: pip install 'relssl[tensorboard]'") from None
        self.writer_class = SummaryWriter

    def on_start(self, run_dir: Path, first_epoch: int) -> None:
        # Steps count on across a resume: each finished epoch's total is kept beside the events,
        # and events after the resumed epoch's start (a killed epoch's) are purged.
        self.ledger = Path(run_dir) / "tensorboard" / "steps.json"
        done = json.loads(self.ledger.read_text()) if first_epoch > 1 and self.ledger.exists() else {}
        self.done = {k: v for k, v in done.items() if int(k) < first_epoch}
        self.steps = self.done.get(str(first_epoch - 1), 0)
        self.writer = self.writer_class(str(Path(run_dir) / "tensorboard"),
                                        purge_step=self.steps + 1 if first_epoch > 1 else None)

    def on_step(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.steps += 1
        self.writer.add_scalar("step/loss", metrics["loss"], self.steps)

    def on_epoch(self, epoch: int, train: dict, val: dict, improved: bool) -> None:
        for split, values in (("train", train), ("val", val)):
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{split}/{name}", value, epoch)
        self.writer.flush()
        self.done[str(epoch)] = self.steps
        write_text(self.ledger, json.dumps(self.done))

    def on_end(self, best_epoch: int, error: BaseException | None) -> None:
        self.writer.close()


def check_loggers(names: list[str]) -> None:
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise RelsslError(f"--log {','.join(unknown)}: expected some of {', '.join(LOGGERS)}")


def make_loggers(names: list[str]) -> list[Callback]:
    """The built-in loggers named by ``--log``."""
    check_loggers(names)
    return [CSVLogger() if n == "csv" else TensorBoardLogger() for n in names]
