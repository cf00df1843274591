"""A run folder's model card (README.md): what it was trained on (with the data files' SHA-256),
by which command and versions on which device, its test metrics beside their trivial
references, and what it is for. Written when a run finishes."""
from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def data_files(spec: str) -> list[tuple[str, str]]:
    """(file, SHA-256) of each file the data reads (none for built-ins read from a package)."""
    from relssl.data.cache import default_cache_dir, file_digest
    from relssl.data.datasets import resolve

    try:
        files = resolve(spec).files()
    except (RelsslError, OSError):
        return []
    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return [(str(f), file_digest(Path(f), cache)) for f in files if Path(f).is_file()]


def write_model_card(run_dir: str | Path, kind: str, data: str, final: dict, device: str, task: str | None = None) -> None:
    """README.md in ``run_dir`` for a finished ``kind`` ("pretrain" or "finetune") run."""
    run_dir = Path(run_dir)
    command = " ".join(["relssl", *sys.argv[1:]]) if Path(sys.argv[0]).name == "relssl" else "the Python API"
    files = data_files(data)
    lines = [f"# relssl {kind} run `{run_dir.name}`", "",
             f"- **Data**: `{data}`" + ("" if files else " (read from a package or generated; no file of its own)")]
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
