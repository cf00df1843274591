"""A run folder: the files one training run leaves, each written atomically.

Every trained command (pretrain, feat2vec, finetune, recsys) writes the same files:
config.yaml (every setting), metrics.jsonl (one line per epoch and split), model.safetensors (the
best-validation weights), checkpoint.pt (the last epoch's full state, for ``--resume``; loaded with
``weights_only=True``) and final.json (test metrics of the best weights; its presence marks a
finished run); pre-training and fine-tuning runs also their fitted preprocessing,
preprocessing.json (relssl.data.fitted), and a model card, README.md (relssl.train.model_card). A file is written to a temporary name and renamed over the old one, so a kill or
a full disk leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_model, save_model

from relssl.errors import RelsslError
from relssl.files import atomic_write, dump_yaml, write_text

CONFIG, METRICS, FINAL = "config.yaml", "metrics.jsonl", "final.json"
WEIGHTS, CHECKPOINT, CURVES = "model.safetensors", "checkpoint.pt", "curves.png"
LOCK = "run.lock"
_HELD: set[Path] = set()  # the run locks this process holds, released at exit if a run never finished


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@atexit.register
def _release_locks() -> None:
    for path in list(_HELD):
        path.unlink(missing_ok=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_jsonl(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


class RunFolder:
    """The files of one run in ``path``; only the main process of a distributed run writes."""

    def __init__(self, path: str | Path, writer: bool = True):
        self.path, self.writer = Path(path), writer

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return (self.path / FINAL).exists()

    def check(self, resume: bool) -> None:
        """A new run refuses a folder that holds one; ``--resume`` needs the run's config.yaml (its
        checkpoint.pt too, unless the run stopped before finishing its first epoch)."""
        if resume and not (self.path / CONFIG).exists():
            raise RelsslError(f"--resume: {self.path} holds no run to resume (no {CONFIG})")
        if not resume and ((self.path / CHECKPOINT).exists() or self.finished):
            raise RelsslError(f"--out {self.path}: a run already exists there; pass --resume to continue it or "
                              f"choose another folder")

    def settings(self, cfg, resume: bool, from_dict):
        """The run's config: ``cfg`` for a new run (a folder holding a run is refused); with
        ``resume``, ``cfg`` or else the run's own config.yaml read by ``from_dict``."""
        self.check(resume)
        return from_dict(self.config()) if resume and cfg is None else cfg

    def start(self, config: dict) -> None:
        """Create and lock the folder, and write every setting of the run."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock()
            write_text(self.path / CONFIG, dump_yaml(config))

    def lock(self) -> None:
        """run.lock names the process writing the folder: a second writer is refused while that
        process lives; a lock left by a killed process is taken over. Released when the run writes
        final.json, or when the process exits."""
        path = self.path / LOCK
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = int(path.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    owner = -1  # being written this instant, or damaged: the next look decides
                if owner == os.getpid():
                    return
                if owner > 0 and _alive(owner):
                    raise RelsslError(f"--out {self.path}: another process (pid {owner}) is writing this run folder; "
                                      f"wait for it, or choose another folder") from None
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            _HELD.add(path)
            return

    def unlock(self) -> None:
        path = self.path / LOCK
        if path in _HELD:
            path.unlink(missing_ok=True)
            _HELD.discard(path)

    def config(self) -> dict:
        """The saved settings (``--resume`` continues with exactly these)."""
        if not (self.path / CONFIG).exists():
            raise RelsslError(f"{self.path}: no {CONFIG}")
        return yaml.safe_load((self.path / CONFIG).read_text()) or {}

    def history(self) -> list[dict]:
        return read_jsonl(self.path / METRICS)

    def write_history(self, records: list[dict]) -> None:
        if self.writer:
            write_jsonl(self.path / METRICS, records)

    def save_weights(self, module: torch.nn.Module) -> None:
        """Tensors only (safetensors; shared modules handled)."""
        if self.writer:
            atomic_write(self.path / WEIGHTS, lambda tmp: save_model(module, str(tmp)))

    def load_weights(self, module: torch.nn.Module, device: torch.device | str) -> None:
        load_model(module, str(self.path / WEIGHTS), device=str(device))

    def save_checkpoint(self, checkpoint: dict) -> None:
        if self.writer:
            atomic_write(self.path / CHECKPOINT, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, device: torch.device | str) -> dict:
        return torch.load(self.path / CHECKPOINT, map_location=device, weights_only=True)

    def write_final(self, final: dict) -> None:
        if self.writer:
            write_text(self.path / FINAL, json.dumps(final, indent=2))
            self.unlock()

    def final(self) -> dict:
        return json.loads((self.path / FINAL).read_text())
