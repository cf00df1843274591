"""Options are defined once: a config field carries its default and its help text, and the command
line derives its flags (name, type, help, default shown) from the dataclass."""
from __future__ import annotations

from dataclasses import MISSING, field, fields
from types import UnionType
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

from relssl.errors import RelsslError


def option(default: Any = MISSING, help: str = "", factory: Callable[[], Any] | None = None):
    """A dataclass field with its flag's help text (``factory`` for mutable defaults)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def from_mapping(cls, raw: dict, what: str = "config", **nested):
    """``cls`` from a config mapping (``nested`` replaces sub-configs already built): each value
    coerced to its field's type (``lr: 1e-3``, which YAML reads as a string, is a float; ``epochs:
    ten`` is one clear error), and an unknown key is one clear error listing the known ones."""
    if not isinstance(raw, dict):
        raise RelsslError(f"{what}: expected a mapping of option to value, got {raw!r}")
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise RelsslError(f"{what}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    hints = get_type_hints(cls)
    values = {k: coerce(v, hints[k], f"{what}: {k}") for k, v in raw.items() if k not in nested}
    return cls(**{**values, **nested})


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the type ``annotation`` (bool, int, float, str, list[...], dict, unions with
    None), or one line naming ``where`` and what was expected."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise RelsslError(f"{where}: expected {_describe(annotation)}, got nothing")
    for option in (o for o in options if o is not type(None)):
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError):
            continue
    raise RelsslError(f"{where}: expected {_describe(annotation)}, got {value!r}")


def _coerce_one(value: Any, kind: Any) -> Any:
    origin = get_origin(kind)
    if origin is list:
        (item,) = get_args(kind)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise TypeError(value)
        return [_coerce_one(v.strip() if isinstance(v, str) else v, item) for v in items]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(value)
        return int(value) if not isinstance(value, str) else int(value.strip())
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError(value)
    if (origin or kind) is dict:
        if isinstance(value, dict):
            return value
        raise TypeError(value)
    return value  # a type this module does not check (a nested config is built by its caller)


def _describe(annotation: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    parts = []
    for o in options:
        if o is type(None):
            parts.append("nothing (null)")
        elif get_origin(o) is list:
            parts.append(f"a list of {names.get(get_args(o)[0], 'values').split(' ', 1)[-1]}s")
        else:
            parts.append(names.get(get_origin(o) or o, str(o)))
    return " or ".join(parts)
