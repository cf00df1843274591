"""Hooks into the one fit loop (relssl.train.loop.fit) for loggers of one's own (W&B, a
dashboard) and the two built in: ``--log csv`` (every step's loss in steps.csv) and ``--log
tensorboard`` (TensorBoard event files under tensorboard/: per-step loss, per-epoch training and
validation metrics, the combiner's task weights; the ``tensorboard`` extra). Callbacks run on
the main process only."""
from __future__ import annotations

import csv
from pathlib import Path

from relssl.errors import RelsslError

LOGGERS = ("csv", "tensorboard")


class Callback:
    """Override what you need; every hook receives plain numbers."""

    def on_start(self, run_dir: Path, first_epoch: int) -> None:
        """Before training; ``first_epoch`` > 1 when a run resumes."""

    def on_step(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """After each optimiser step: at least ``loss``."""

    def on_epoch(self, epoch: int, train: dict[str, float], val: dict[str, float], improved: bool) -> None:
        """After each epoch's validation."""

    def on_end(self, best_epoch: int) -> None:
        """After the last epoch."""


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

    def on_end(self, best_epoch: int) -> None:
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
        self.writer = self.writer_class(str(Path(run_dir) / "tensorboard"), purge_step=None)
        self.steps = 0

    def on_step(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.steps += 1
        self.writer.add_scalar("step/loss", metrics["loss"], self.steps)

    def on_epoch(self, epoch: int, train: dict, val: dict, improved: bool) -> None:
        for split, values in (("train", train), ("val", val)):
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{split}/{name}", value, epoch)
        self.writer.flush()

    def on_end(self, best_epoch: int) -> None:
        self.writer.close()


def make_loggers(names: list[str]) -> list[Callback]:
    """The built-in loggers named by ``--log``."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise RelsslError(f"--log {','.join(unknown)}: expected some of {', '.join(LOGGERS)}")
    return [CSVLogger() if n == "csv" else TensorBoardLogger() for n in names]
