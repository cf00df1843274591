"""Writing files so that a kill or a full disk never leaves half of one; reading YAML strictly."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from relssl.errors import RelsslError


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a lock or a temp folder it left is stale once it does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_free(folder: Path, needed: int, what: str) -> None:
    """Refuse, before writing, ``what`` of about ``needed`` bytes into ``folder`` when its disk has
    less free: a write that fails half-way costs the time spent before it (a full disk mid-file
    raises ENOSPC at best; under a memory map it is a SIGBUS without a message)."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise RelsslError(f"{what}: needs about {needed / 2**20:,.0f} MiB, {free / 2**20:,.0f} MiB free on the disk "
                          f"of {folder}; free space or choose another folder (the files already there are kept)")


def allocate(path: Path) -> None:
    """Reserve a memory-mapped file's blocks now: a full disk is then an ENOSPC error here, not a
    SIGBUS on some later write into the map."""
    if not hasattr(os, "posix_fallocate"):  # macOS: a full disk stays a late error there
        return
    with open(path, "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)


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
