"""Where relssl keeps generated data and caches, and where it finds the third-party data."""
from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """Where generated data lives: $RELSSL_HOME, else ./data."""
    return Path(os.environ.get("RELSSL_HOME", "data"))


def shared_data_dir() -> Path:
    """The third-party data folder: $RELSSL_SHARED_DATA, else ../shared/data from here or the repo."""
    if "RELSSL_SHARED_DATA" in os.environ:
        return Path(os.environ["RELSSL_SHARED_DATA"])
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return candidates[0]
