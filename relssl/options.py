"""Options are defined once: a config field carries its default and its help text, and the command
line derives its flags (name, type, help, default shown) from the dataclass."""
from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any, Callable

from relssl.errors import RelsslError


def option(default: Any = MISSING, help: str = "", factory: Callable[[], Any] | None = None):
    """A dataclass field with its flag's help text (``factory`` for mutable defaults)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def from_mapping(cls, raw: dict, what: str = "config", **nested):
    """``cls`` from a config mapping (``nested`` replaces sub-configs already built); an unknown
    key is one clear error listing the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise RelsslError(f"{what}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    return cls(**{**raw, **nested})
