"""relssl's Python logger ("relssl"): training progress (epoch lines, which run trains, cache
builds) goes through it, never through bare prints. The command line shows it on standard output
(``--quiet``: warnings only; ``--verbose``: debug too); from Python it is silent until the
application configures logging (``logging.basicConfig(level=logging.INFO)``)."""
from __future__ import annotations

import logging
import sys

LOG = logging.getLogger("relssl")


def info(message: str) -> None:
    """The default ``log`` of every training function."""
    LOG.info(message)


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at each message (captured, redirected), as print does."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler sets it once; the current stdout is read instead
        pass


def configure_cli(quiet: bool = False, verbose: bool = False) -> tuple:
    """The command line's logging: plain messages on standard output at INFO (or the level the
    flags choose); calling it again replaces, never duplicates, its handler. Returns the state
    ``restore`` puts back (``main`` called from Python leaves logging as it found it)."""
    before = (LOG.level, LOG.propagate, list(LOG.handlers))
    for handler in [h for h in LOG.handlers if isinstance(h, _CurrentStdout)]:
        LOG.removeHandler(handler)
    handler = _CurrentStdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    LOG.propagate = False
    return before


def restore(state: tuple) -> None:
    LOG.setLevel(state[0])
    LOG.propagate = state[1]
    LOG.handlers[:] = state[2]
