"""The package version, on its own so that every layer can name it without importing the API."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 (12 hex digits) of relssl's own source, every .py file by path and content: the
    version string stays put between commits, so a run folder records this to tell which code
    trained it (an experiment reusing a run trained by other code says so)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
