"""Preprocessed-data cache: encoded tables and graph arrays as ``.npy`` files plus a JSON manifest.

An entry is a folder named by a key over the source files' content (SHA-256), the schema, the
split settings and the code version. Loading memory-maps the arrays (``np.load(mmap_mode="r")``):
a hit starts in seconds, and the tensors live in the page cache, shared by every process on the
machine (e.g. the ranks of a torchrun job) instead of being copied into each one's private memory.
Nothing is pickled: arrays are plain ``.npy`` read with ``allow_pickle=False``, the rest is JSON.

Content hashing: a full SHA-256 of each source file, because a size + mtime + sampled-blocks key
misses same-length edits inside a CSV (one amount changed from 1.5 to 1.6). Hashing runs at about
0.8 GB/s here (HI-Small: under a second), and a digest memo keyed by (size, mtime) spares even
that on later runs; any change of size or mtime makes the file hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch_frame
import yaml
from torch_frame.data.stats import StatType

import relssl
from relssl.data.encoding import EncodedTable, column_infos
from relssl.data.prepare import PreparedData, prepare
from relssl.errors import RelsslError

FORMAT = 1  # bump when the encoding or the entry layout changes: old entries are then never read
_STYPES = {s.value: s for s in (torch_frame.numerical, torch_frame.categorical, torch_frame.timestamp)}
_TIME_STATS = {StatType.NEWEST_TIME, StatType.OLDEST_TIME, StatType.MEDIAN_TIME}


def default_cache_dir() -> Path:
    """$RELSSL_CACHE, else ``cache`` under the data home ($RELSSL_HOME or ./data)."""
    from relssl.data.datasets import data_home

    return Path(os.environ["RELSSL_CACHE"]) if "RELSSL_CACHE" in os.environ else data_home() / "cache"


def file_digest(path: Path, cache_dir: Path) -> str:
    """SHA-256 of the file's bytes, remembered per (path, size, mtime) in ``cache_dir/digests.json``."""
    stat = path.stat()
    memo_path = cache_dir / "digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    name = str(path.resolve())
    seen = memo.get(name)
    if seen and seen["size"] == stat.st_size and seen["mtime_ns"] == stat.st_mtime_ns:
        return seen["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    memo[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    _write_atomic(memo_path, json.dumps(memo, indent=1))
    return digest.hexdigest()


def cacheable(spec: str) -> bool:
    """Whether the cache can hold ``spec``: it stores numerical, categorical and timestamp columns,
    so Amazon reviews and schemas declaring text or embedding columns are prepared in memory
    (their text vectors have a cache of their own, relssl.data.text)."""
    from relssl.data.datasets import AMAZON_SUFFIXES, BUILTIN_FILES, BUILTIN_SCHEMAS, SCHEMAS

    if spec in BUILTIN_FILES or spec.endswith(AMAZON_SUFFIXES):
        return False
    path = SCHEMAS / BUILTIN_SCHEMAS[spec] if spec in BUILTIN_SCHEMAS else Path(spec)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return True
    try:
        schema = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return True  # the schema reader reports it, naming the file
    tables = [schema.get("events")] + list((schema.get("entities") or {}).values()) if isinstance(schema, dict) else []
    for table in tables:
        for column in ((table or {}).get("columns") or {}).values() if isinstance(table, dict) else []:
            stype = column.get("stype") if isinstance(column, dict) else column
            if stype in ("text", "embedding"):
                return False
    return True


def source_files(spec: str) -> tuple[str, list[Path]]:
    """How a --data spec is read ('ibm_aml' or 'schema') and the files its content comes from."""
    from relssl.data.datasets import BUILTIN_SCHEMAS, SCHEMAS, SYNTHETIC_AML, shared_data_dir, synthetic_aml_path

    if spec == SYNTHETIC_AML:
        return "ibm_aml", [synthetic_aml_path()]
    if spec in BUILTIN_SCHEMAS:
        return "schema", schema_files(SCHEMAS / BUILTIN_SCHEMAS[spec], shared_data_dir())
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        return "schema", schema_files(path, path.parent)
    return "ibm_aml", [path]


def schema_files(path: Path, base: Path) -> list[Path]:
    """The YAML schema and the tables it names (their content is part of the key)."""
    if not path.is_file():
        raise RelsslError(f"{path}: schema file not found")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RelsslError(f"{path}: malformed YAML: {str(err).splitlines()[0]}") from None
    tables = [spec.get("events")] + list((spec.get("entities") or {}).values()) if isinstance(spec, dict) else []
    files = [base / t["path"] for t in tables if isinstance(t, dict) and "path" in t]
    for file in files:
        if not file.is_file():
            raise RelsslError(f"{path}: table file {file} not found")
    return [path, *files]


def cache_key(spec: str, fractions, seed: int, max_categories: int, cache_dir: Path) -> tuple[str, dict]:
    """The entry's key and the inputs it was computed from (kept in the manifest for inspection)."""
    from relssl.data.ibm_aml import COL_STYPES, TRANSFORMS, _check_header

    reader, files = source_files(spec)
    if reader == "ibm_aml":
        _check_header(files[0])
    inputs = {
        "reader": reader,
        "files": {str(f): file_digest(f, cache_dir) for f in files},
        "split": [round(float(x), 12) for x in fractions],
        "seed": seed,  # decides the split only without a time column, but cheap to include
        "max_categories": max_categories,
        "code": [relssl.__version__, FORMAT],
    }
    if reader == "ibm_aml":  # the reader's built-in schema (a YAML schema is covered by its file digest)
        inputs["schema"] = {"stypes": {c: s.value for c, s in COL_STYPES.items()}, "transforms": TRANSFORMS}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    return key, inputs


def load_prepared(spec: str, fractions=(0.6, 0.2, 0.2), seed: int = 0, max_categories: int = 1000,
                  cache_dir: str | Path | None = None, chunk_bytes: int | None = None,
                  log=None) -> tuple[PreparedData, bool]:
    """The prepared data of ``spec`` from the cache, building the entry first on a miss.

    Returns the data and whether it was a hit. IBM AML files are ingested out of core, straight
    into the entry; other sources are prepared in memory and then stored.
    """
    from relssl.data.datasets import load_dataset
    from relssl.data.ingest import CHUNK_BYTES, ingest_ibm_aml

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key, inputs = cache_key(spec, fractions, seed, max_categories, cache_dir)
    entry = cache_dir / key
    if (entry / "manifest.json").exists():
        return read_entry(entry), True
    if log:
        log(f"preparing {spec} into the cache at {entry} (later runs load it from there)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        if inputs["reader"] == "ibm_aml":
            arrays, meta = ingest_ibm_aml(source_files(spec)[1][0], tmp, fractions, max_categories,
                                          chunk_bytes or CHUNK_BYTES)
        else:
            arrays, meta = prepared_arrays(prepare(load_dataset(spec), fractions, seed, max_categories))
        write_entry(tmp, arrays, {**meta, "key": key, "inputs": inputs})
        try:
            tmp.rename(entry)
        except OSError:  # another process stored the same entry first: use theirs
            if not (entry / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_entry(entry), False


def prepared_arrays(prep: PreparedData) -> tuple[dict[str, np.ndarray], dict]:
    """An in-memory PreparedData as entry arrays and metadata."""
    arrays = {"split": prep.split}
    for name in ("src", "dst", "time"):
        if getattr(prep, name) is not None:
            arrays[name] = getattr(prep, name).numpy()
    tables = {}
    for table, enc in (("events", prep.events), ("entities", prep.entities)):
        if enc is None:
            continue
        for stype in enc.tf.stypes:
            arrays[f"{table}.{stype.value}"] = enc.tf.feat_dict[stype].numpy()
        tables[table] = {"col_names": {s.value: list(cols) for s, cols in enc.tf.col_names_dict.items()},
                         "col_stats": enc.col_stats}
    name = prep.data.name if prep.data is not None else ""
    return arrays, {"name": name, "num_entities": prep.num_entities, "tables": tables, "mask_groups": prep.mask_groups}


def write_entry(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Arrays as ``<name>.npy`` (those already memory-mapped there are kept) and manifest.json last,
    so an entry with a manifest is complete."""
    for name, arr in arrays.items():
        if not (isinstance(arr, np.memmap) and Path(arr.filename) == (folder / f"{name}.npy").resolve()):
            np.save(folder / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    meta = dict(meta)
    meta["tables"] = {t: {"col_names": v["col_names"], "col_stats": stats_to_json(v["col_stats"])}
                      for t, v in meta["tables"].items()}
    meta["format"] = FORMAT
    meta["arrays"] = {name: {"dtype": str(arr.dtype), "shape": list(arr.shape)} for name, arr in arrays.items()}
    (folder / "manifest.json").write_text(json.dumps(meta, indent=1))


def read_entry(folder: Path) -> PreparedData:
    """Memory-map an entry's arrays into a PreparedData (its ``data`` is None: the source table is not kept)."""
    meta = json.loads((folder / "manifest.json").read_text())
    if meta.get("format") != FORMAT:
        raise RelsslError(f"{folder}: cache entry of format {meta.get('format')}, expected {FORMAT}; delete it")

    def tensor(name: str) -> torch.Tensor | None:
        if name not in meta["arrays"]:
            return None
        arr = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        with warnings.catch_warnings():  # read-only maps: relssl only ever gathers rows from them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(arr)

    tables = {}
    for table, info in meta["tables"].items():
        col_names = {_STYPES[s]: cols for s, cols in info["col_names"].items()}
        tf = torch_frame.TensorFrame({s: tensor(f"{table}.{s.value}") for s in col_names}, col_names)
        col_stats = stats_from_json(info["col_stats"])
        tables[table] = EncodedTable(tf, col_stats, column_infos(tf, col_stats))
    split = np.load(folder / "split.npy", mmap_mode="r", allow_pickle=False)
    return PreparedData(None, split, tables["events"], tables.get("entities"), tensor("src"), tensor("dst"),
                        tensor("time"), meta["num_entities"], meta.get("mask_groups", []))


def stats_to_json(col_stats: dict) -> dict:
    def value(stat: StatType, v):
        if stat in _TIME_STATS:
            return v.tolist()
        if stat == StatType.COUNT:
            return [list(v[0]), [int(c) for c in v[1]]]
        if stat == StatType.YEAR_RANGE:
            return [int(y) for y in v]
        return v

    return {col: {stat.value: value(stat, v) for stat, v in stats.items()} for col, stats in col_stats.items()}


def stats_from_json(raw: dict) -> dict:
    def value(stat: StatType, v):
        if stat in _TIME_STATS:
            return torch.tensor(v, dtype=torch.long)
        if stat == StatType.COUNT:
            return tuple(v)
        return v

    return {col: {StatType(k): value(StatType(k), v) for k, v in stats.items()} for col, stats in raw.items()}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
