"""Writing files so that a kill or a full disk never leaves half of one; reading YAML strictly."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from relssl.errors import RelsslError


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


MAX_YAML_BYTES = 10 << 20  # a schema or config larger than this is not a schema or a config


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (a few hundred bytes of nested aliases expand to
    gigabytes) and with duplicate keys refused (taken last-wins, one of them would vanish)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: aliases (*name) are not read; write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, what: str | None = None):
    """A YAML file's content through ``_StrictLoader``, or one line naming the file and what is
    wrong (never a line of its content)."""
    path = Path(path)
    where = what or str(path)
    if not path.is_file():
        raise RelsslError(f"{where}: file not found")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise RelsslError(f"{where}: {path.stat().st_size:,} bytes; a schema or config is at most {MAX_YAML_BYTES:,}")
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RelsslError(f"{where}: malformed YAML: {first}") from None


class _PlainDumper(yaml.SafeDumper):
    """Never anchors and aliases: what relssl writes, its strict reader reads back."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(obj) -> str:
    return yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False)
