"""Options are defined once: a config field carries its default and its help text, and the command
line derives its flags (name, type, help, default shown) from the dataclass."""
from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any, Callable


def option(default: Any = MISSING, help: str = "", factory: Callable[[], Any] | None = None):
    """A dataclass field with its flag's help text (``factory`` for mutable defaults)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})
