"""A run folder's model card (README.md): what it was trained on (with the data files' SHA-256),
by which command and versions on which device, its test metrics beside their trivial
references, and what it is for. Written when a run finishes."""
from __future__ import annotations

import hashlib
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from relssl.data.datasets import BUILTIN_DATABASES
from relssl.errors import RelsslError
from relssl.files import write_text
from relssl.objectives import reference_key
from relssl.version import __version__

CARD = "README.md"

USES = {
    "pretrain": "Embeddings of rows in this data's format, for models of your own: `relssl embed --run {run}` "
                "for its own rows, `--data NEW` for new rows (encoded with its preprocessing.json), or "
                "the backbone of a fine-tuned task (`relssl finetune --init {run}`). The metrics are those of "
                "self-supervised pretext tasks, not of any downstream task.",
    "finetune": "Predictions of `{task}` for rows in this data's format: `relssl predict --run {run} --data NEW` "
                "(a binary task's prediction uses the threshold chosen on validation). Trained and measured on the "
                "temporal split below; it has not been checked on data from another source or period.",
}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def data_files(spec: str) -> list[tuple[str, str]]:
    """(file, SHA-256) of each file the data reads: its files, or a schema's YAML and tables."""
    from relssl.data.datasets import resolve

    try:
        files = [Path(f) for f in resolve(spec).files()]
        return [(str(f), sha256(f)) for f in files if f.is_file()]
    except (RelsslError, OSError):
        return []


def write_model_card(run_dir: str | Path, kind: str, data: str, final: dict, device: str, task: str | None = None) -> None:
    """README.md in ``run_dir`` for a finished ``kind`` ("pretrain" or "finetune") run."""
    run_dir = Path(run_dir)
    # quoted as a shell reads it: --mask-exclude 'From Bank,To Bank' pasted back is one argument
    command = (shlex.join(["relssl", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("relssl", "__main__.py")
               else "the Python API")
    files = data_files(data)
    note = " (read from a package or generated; no file of its own)" if not files else (
        f" (its tables come from the `{data}` package data; the hash is its schema's)" if data in BUILTIN_DATABASES
        else "")
    lines = [f"# relssl {kind} run `{run_dir.name}`", "", f"- **Data**: `{data}`{note}"]
    lines += [f"  - `{name}`: SHA-256 `{digest}`" for name, digest in files]
    lines += [f"- **Command**: `{command}`",
              f"- **Versions**: relssl {__version__}, torch {_version('torch')}, pytorch-frame "
              f"{_version('pytorch-frame')}, Python {platform.python_version()}",
              f"- **Device**: {device}", f"- **Finished**: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
              "- **Settings**: config.yaml" + ("; **fitted preprocessing**: preprocessing.json"
                                               if (run_dir / "preprocessing.json").exists() else ""), "",
              "## Test metrics (the best validation epoch's weights)", "",
              "| metric | value | trivial reference |", "|---|---|---|"]
    for key, value in final.items():
        if any(p.endswith("_ref") for p in key.split("/")) or not isinstance(value, (int, float)) or isinstance(
                value, bool):
            continue
        ref = final.get(reference_key(key)) if "/" in key else None
        lines.append(f"| {key} | {value:.4g} | {'' if ref is None else f'{ref:.4g}'} |")
    lines += ["", "## Intended use", "", USES[kind].format(run=run_dir, task=task), ""]
    write_text(run_dir / CARD, "\n".join(lines))
