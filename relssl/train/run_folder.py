"""A run folder: the files one training run leaves, each written atomically.

Every trained command (pretrain, feat2vec, finetune, recsys) writes the same files:
config.yaml (every setting; its last line, CONFIG_END, shows it was not cut short),
metrics.jsonl (one line per epoch and split), model.safetensors (the best-validation weights),
checkpoint.pt (the last epoch's full state, for ``--resume``; loaded with ``weights_only=True``),
data.json (the SHA-256 of every data file the run read, ``--resume`` refusing changed data;
``code``, the digest of the relssl source that trained it, one more for each resumption by other
code; ``config_end``, the line config.yaml ends with) and final.json (test metrics of the best
weights; its presence marks a finished run); pre-training and fine-tuning runs also their fitted
preprocessing, preprocessing.json (relssl.data.fitted), and a model card, README.md
(relssl.train.model_card). A file is written to a temporary name and renamed over the old one, so
a kill or a full disk leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import atexit
import json
from collections import Counter
import os
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from relssl.errors import RelsslError, out_of_memory
from relssl.files import atomic_write, check_free, dump_yaml, pid_alive, read_yaml, write_text
from relssl.version import source_digest

CONFIG, METRICS, FINAL, DATA = "config.yaml", "metrics.jsonl", "final.json", "data.json"
WEIGHTS, CHECKPOINT, CURVES = "model.safetensors", "checkpoint.pt", "curves.png"
LOCK = "run.lock"
# config.yaml's last line: a copy without it was cut short (data.json's config_end says the run writes it;
# runs from before it are not checked so)
CONFIG_END = "# end of config.yaml"
# Settings that change where or how fast a run trains, not what it computes (an experiment reuses a
# run whatever they were); a resumed run may change them, and its epochs.
RUNTIME_KEYS = frozenset({"device", "workers", "cache", "cache_dir", "log"})
RESUMABLE = RUNTIME_KEYS | {"epochs"}
_HELD: set[Path] = set()  # the run locks this process holds, released at exit if a run never finished


@atexit.register
def _release_locks() -> None:
    for path in list(_HELD):
        path.unlink(missing_ok=True)


def read_jsonl(path: Path) -> list[dict]:
    """One record per line; a damaged line is one error naming the file and line."""
    records = []
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise RelsslError(f"{path}: line {number} is not a JSON record (damaged); start the run anew in "
                                  f"another folder") from None
    return records


def save_torch(obj, path: Path) -> None:
    """torch.save into a Python file: a full disk is then an OSError (ENOSPC), where torch's own
    writer says only "unexpected pos"."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def damaged(path: Path, err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (f"{path}: damaged or not written by relssl ({(text[0] if text else type(err).__name__)[:120]}); "
            f"start the run anew in another folder")


def write_jsonl(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def tensor_bytes(obj) -> int:
    """The bytes of every tensor in a nested state (what torch.save will write, give or take its headers)."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def plain(value):
    """Tuples as lists, recursively: a config as YAML saves it."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same_value(saved, wanted) -> bool:
    """Equal, or two spellings of one existing file (``data/x.csv`` and its absolute path)."""
    if plain(saved) == plain(wanted):
        return True
    return (isinstance(saved, str) and isinstance(wanted, str) and Path(saved).exists() and Path(wanted).exists()
            and Path(saved).resolve() == Path(wanted).resolve())


def setting_differences(saved: dict, wanted: dict, defaults: dict, ignore: set[str], prefix: str = "") -> list[str]:
    """'key saved there, wanted now' for each setting that differs. A nested config (a non-empty
    default mapping: ``train``, ``model``) is compared setting by setting, and a setting the saved run
    predates counts as its default there; an option mapping (``combiner_options``, default empty) is
    compared whole. Settings the saved run has and ``wanted`` lacks (removed since) are not compared."""
    out = []
    for key, value in wanted.items():
        if key in ignore:
            continue
        default = defaults.get(key)
        old = saved.get(key, default)
        if isinstance(default, dict) and default and isinstance(old, dict):
            out += setting_differences(old, value, default, ignore, f"{prefix}{key}.")
        elif not same_value(old, value):
            out.append(f"{prefix}{key} {plain(old)!r} there, {plain(value)!r} now")
    return out


class RunFolder:
    """The files of one run in ``path``; only the main process of a distributed run writes."""

    def __init__(self, path: str | Path, writer: bool = True):
        self.path, self.writer = Path(path), writer
        self.digests: dict[str, str] | None = None  # the data's, written by start()
        self.resuming = False  # check_data's: start() keeps the code digests of an earlier session

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

    def settings(self, cfg, resume: bool, from_dict, changes: dict | None = None):
        """The run's config: ``cfg`` for a new run (a folder holding a run is refused); with
        ``resume``, ``cfg`` or else the run's own config.yaml read by ``from_dict``, with ``changes``
        applied (dotted keys such as ``train.epochs``: the settings a resumed run may change, its
        epochs and where it runs: RESUMABLE)."""
        self.check(resume)
        if not resume or cfg is not None:
            return cfg
        saved = self.config()
        for key, value in (changes or {}).items():
            *parents, last = key.split(".")
            node = saved
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return from_dict(saved)

    def check_data(self, digests: dict[str, str], resume: bool, refusal: str | None = None) -> None:
        """A resumed (or reused) run continues on the data it started on: a file whose content
        changed is refused, naming it. ``digests``: relssl.data.cache.data_digests of the data now,
        kept for start() to write. Runs from before data.json are not checked."""
        self.digests, self.resuming = digests, resume
        if not resume or not (self.path / DATA).exists():
            return
        try:
            saved = Counter(json.loads((self.path / DATA).read_text())["files"].values())
        except (ValueError, KeyError, AttributeError):
            raise RelsslError(f"{self.path / DATA}: damaged (expected {{\"files\": {{path: sha256}}}}); start the run "
                              f"anew in another folder") from None
        changed = [name for name, digest in digests.items() if digest not in saved]
        if changed or saved != Counter(digests.values()):  # by content: a moved data folder still resumes
            what = (", ".join(Path(n).name for n in changed[:3]) + " changed") if changed else "a file it read is gone"
            raise RelsslError(refusal.format(what=what) if refusal else
                              f"--resume {self.path}: the data changed since the run started ({what}); resume "
                              f"with the data it started on, or start a new run")

    def start(self, config: dict) -> None:
        """Create and lock the folder, and write every setting of the run (and its data's and code's
        digests)."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock()
            code = self.code() if self.resuming else []
            if source_digest() not in code[-1:]:
                code.append(source_digest())
            write_text(self.path / CONFIG, dump_yaml(config) + CONFIG_END + "\n")
            if self.digests is not None:
                write_text(self.path / DATA, json.dumps({"files": self.digests, "code": code, "config_end": CONFIG_END},
                                                        indent=1))

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
                if owner > 0 and pid_alive(owner):
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

    def trained_by(self) -> str:
        """The command whose settings the folder's config.yaml holds."""
        config = self.config()
        for key, command in (("label_fraction", "relssl finetune"), ("alpha1", "relssl feat2vec"),
                             ("interactions", "relssl recsys train")):
            if key in config:
                return command
        return "relssl pretrain"

    def config(self) -> dict:
        """The saved settings (``--resume`` continues with exactly these). An empty config.yaml, or
        one cut short (without its CONFIG_END line, where data.json says the run writes it), is
        refused: read, its missing settings would be defaults, a model the checkpoint does not fit
        or other data."""
        path = self.path / CONFIG
        if not path.exists():
            raise RelsslError(f"{self.path}: no {CONFIG}")
        saved = read_yaml(path)
        if saved is not None and not isinstance(saved, dict):
            raise RelsslError(f"{path}: expected a mapping of settings")
        if not saved:
            problem = "no settings"
        elif (self.recorded().get("config_end") == CONFIG_END
              and path.read_text().rstrip("\n").rpartition("\n")[2] != CONFIG_END):
            problem = f"cut short: its last line, {CONFIG_END!r}, is missing"
        else:
            return saved
        raise RelsslError(f"{path}: empty or damaged ({problem}); restore it, or start the run anew in another folder")

    def recorded(self) -> dict:
        """data.json's content ({} for a new folder; a damaged one is check_data's to refuse)."""
        try:
            data = json.loads((self.path / DATA).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def code(self) -> list[str]:
        """The digests of the relssl source that trained the run (relssl.version.source_digest), in
        order; empty for a new folder or one from before they were recorded."""
        code = self.recorded().get("code", [])
        return [c for c in code if isinstance(c, str)] if isinstance(code, list) else []

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
        try:
            load_model(module, str(self.path / WEIGHTS), device=str(device))
        except Exception as err:  # safetensors' own error type, or weights of another shape
            if out_of_memory(err):
                raise
            raise RelsslError(damaged(self.path / WEIGHTS, err)) from None

    def save_checkpoint(self, checkpoint: dict) -> None:
        """The new checkpoint is written beside the old one, which stays until the new one is whole."""
        if self.writer:
            check_free(self.path, tensor_bytes(checkpoint), f"{self.path / CHECKPOINT}")
            atomic_write(self.path / CHECKPOINT, lambda tmp: save_torch(checkpoint, tmp))

    def load_checkpoint(self, device: torch.device | str) -> dict:
        try:
            checkpoint = torch.load(self.path / CHECKPOINT, map_location=device, weights_only=True)
        except Exception as err:  # truncated, or holding objects that are not tensors (never unpickled)
            if out_of_memory(err):
                raise
            raise RelsslError(damaged(self.path / CHECKPOINT, err)) from None
        if not isinstance(checkpoint, dict) or not {"state", "epoch", "best", "best_epoch"} <= set(checkpoint):
            raise RelsslError(f"{self.path / CHECKPOINT}: not a relssl checkpoint; start the run anew in another folder")
        return checkpoint

    def write_final(self, final: dict) -> None:
        if self.writer:
            write_text(self.path / FINAL, json.dumps(final, indent=2))
            self.unlock()

    def final(self) -> dict:
        return json.loads((self.path / FINAL).read_text())
