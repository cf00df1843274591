"""The READERS registry: every input format in one place.

A reader says which paths it takes, how it reads one into RelationalData, which files'
bytes the preprocessed-data cache must fingerprint, whether the cache can hold its columns,
and (optionally) how to ingest a file out of core straight into a cache entry. ``--data``,
the cache and the error for an unknown input all follow the registry, so a new format is one
reader module plus one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from relssl.data.amazon import read_amazon_reviews
from relssl.data.database import Database, event_graph_or_database
from relssl.data.ibm_aml import COL_STYPES, TRANSFORMS, _check_header, read_ibm_aml
from relssl.data.ingest import ingest_ibm_aml
from relssl.data.relational import RelationalData
from relssl.data.schema import load_schema, read_yaml, schema_files, schema_stypes
from relssl.data.sqlite import read_sqlite
from relssl.errors import RelsslError


@dataclass(frozen=True)
class Source:
    """A resolved ``--data``: its reader and file; ``base`` is the folder a schema's table paths
    start from (default: the schema's own); ``shared`` marks a built-in over ../shared/data."""

    spec: str
    reader: "Reader"
    path: Path
    base: Path | None = None
    shared: bool = False

    def check_present(self) -> None:
        if self.shared and not (self.base or self.path.parent).is_dir():
            raise RelsslError(f"--data {self.spec}: the shared data folder {self.base or self.path.parent} does not "
                              f"exist; set RELSSL_SHARED_DATA to the folder holding {self.spec}'s files")
        if self.shared and not self.path.is_file():
            inside = self.path.relative_to(self.base) if self.base else self.path.name
            raise RelsslError(f"--data {self.spec}: {self.path} does not exist; put the file there or set "
                              f"RELSSL_SHARED_DATA to the folder holding {inside}")

    def read(self, skip_bad_rows: bool = False, on_orphans: str | None = None,
             on_bad_values: str = "error") -> RelationalData | Database:
        self.check_present()
        return self.reader.read(self, skip_bad_rows, on_orphans, on_bad_values)

    def files(self) -> list[Path]:
        """The files whose content the cache key covers."""
        self.check_present()
        return self.reader.files(self)

    @property
    def cacheable(self) -> bool:
        return self.reader.cacheable(self)


@dataclass(frozen=True)
class Reader:
    name: str
    formats: str  # what it takes, for the error naming every known input
    accepts: Callable[[Path], bool]
    # (source, skip_bad_rows, on_orphans, on_bad_values: relssl.data.values)
    read: Callable[[Source, bool, str | None, str], RelationalData | Database]
    files: Callable[[Source], list[Path]] = lambda source: [source.path]
    cacheable: Callable[[Source], bool] = lambda source: True
    # The reader's own fixed schema, part of the cache key (a YAML schema is keyed by its digest).
    key: Callable[[Source], dict] = lambda source: {}
    # Out-of-core ingest into a cache entry: (path, folder, fractions, max_categories, chunk_bytes, on_bad_values).
    ingest: Callable | None = field(default=None)


def _schema_cacheable(source: Source) -> bool:
    """The cache stores numerical, categorical and timestamp columns: a schema declaring text or
    embedding columns is prepared in memory (text vectors have a cache of their own)."""
    try:
        return not {"text", "embedding"} & set(schema_stypes(read_yaml(source.path)))
    except RelsslError:
        return True  # the schema reader reports it, naming the file


def _ibm_key(source: Source) -> dict:
    _check_header(source.path)
    return {"schema": {"stypes": {c: s.value for c, s in COL_STYPES.items()}, "transforms": TRANSFORMS}}


AMAZON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")

# First match wins; IBM AML takes any other existing file, so it comes last.
READERS = {reader.name: reader for reader in (
    Reader("schema", "a YAML schema (.yaml)", lambda p: p.suffix in (".yaml", ".yml"),
           lambda s, skip, orphans, bad: load_schema(s.path, s.base, orphans, bad),
           files=lambda s: schema_files(s.path, s.base or s.path.parent), cacheable=_schema_cacheable),
    Reader("sqlite", "a SQLite file (.sqlite, .sqlite3, .db)", lambda p: p.suffix in SQLITE_SUFFIXES,
           lambda s, skip, orphans, bad: event_graph_or_database(read_sqlite(s.path, orphans or "error")),
           cacheable=lambda s: False),
    Reader("amazon", "Amazon review JSON lines (.json, .json.gz)", lambda p: p.name.endswith(AMAZON_SUFFIXES),
           lambda s, skip, orphans, bad: read_amazon_reviews(s.path, skip, name=s.spec if s.shared else None),
           cacheable=lambda s: False),
    Reader("ibm_aml", "an IBM AML CSV path (.csv, .csv.gz or .parquet)",
           lambda p: p.suffix in (".csv", ".gz", ".parquet") or p.exists(),
           lambda s, skip, orphans, bad: read_ibm_aml(s.path, bad), key=_ibm_key, ingest=ingest_ibm_aml,
           cacheable=lambda s: s.path.suffix not in (".gz", ".parquet")),  # the out-of-core ingest reads plain text
)}


def reader_for(path: Path, spec: str, builtins: list[str]) -> Reader:
    for reader in READERS.values():
        if reader.accepts(path):
            return reader
    raise RelsslError(f"--data '{spec}': not a built-in dataset ({', '.join(builtins)}), "
                      f"nor {', nor '.join(r.formats for r in READERS.values())}")
