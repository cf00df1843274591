"""Resolve a --data argument: a built-in dataset name, an IBM AML CSV path, Amazon review JSON
lines, or a YAML schema."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from relssl.data import aml_generator
from relssl.data.aml_generator import PRESETS, write_aml
from relssl.data.relational import RelationalData
from relssl.errors import RelsslError

SCHEMAS = Path(__file__).parent / "schemas"
# Built-in names: the bundled synthetic AML default, and schemas over ../shared/data.
SYNTHETIC_AML = "synthetic-aml"
SYNTHETIC_AML_ROWS = PRESETS["default"].rows
BUILTIN_SCHEMAS = {"amlsim": "amlsim.yaml", "ethereum-tedge": "ethereum_tedge.yaml"}
# Built-in names read by their own reader from a file under the shared data folder.
BUILTIN_FILES = {"amazon_fashion": "amazon_fashion/AMAZON_FASHION_5.json"}
AMAZON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


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
    return [SYNTHETIC_AML, *BUILTIN_SCHEMAS, *BUILTIN_FILES]


def load_dataset(spec: str, skip_bad_rows: bool = False) -> RelationalData:
    """``skip_bad_rows`` lets line-based readers (Amazon reviews) skip malformed lines with a
    counted warning instead of failing on the first."""
    from relssl.data.amazon import read_amazon_reviews
    from relssl.data.ibm_aml import read_ibm_aml
    from relssl.data.schema import load_schema

    if spec == SYNTHETIC_AML:
        return read_ibm_aml(synthetic_aml_path())
    if spec in BUILTIN_SCHEMAS or spec in BUILTIN_FILES:
        base = shared_data_dir()
        if not base.is_dir():
            raise RelsslError(f"--data {spec}: the shared data folder {base} does not exist; "
                              f"set RELSSL_SHARED_DATA to the folder holding {spec}'s files")
        if spec in BUILTIN_SCHEMAS:
            return load_schema(SCHEMAS / BUILTIN_SCHEMAS[spec], base_dir=base)
        path = base / BUILTIN_FILES[spec]
        if not path.is_file():
            raise RelsslError(f"--data {spec}: {path} does not exist; put the file there or set "
                              f"RELSSL_SHARED_DATA to the folder holding {BUILTIN_FILES[spec]}")
        return read_amazon_reviews(path, skip_bad_rows, name=spec)
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        return load_schema(path)
    if path.name.endswith(AMAZON_SUFFIXES):
        return read_amazon_reviews(path, skip_bad_rows)
    if path.suffix in (".csv", ".gz") or path.exists():
        return read_ibm_aml(path)
    raise RelsslError(f"--data '{spec}': not a built-in dataset ({', '.join(builtin_names())}), "
                      f"nor an IBM AML CSV path, nor Amazon review JSON lines (.json, .json.gz), "
                      f"nor a YAML schema (.yaml)")
