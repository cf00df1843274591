"""Preprocessed-data cache: encoded tables and graph arrays as ``.npy`` files plus a JSON manifest.

An entry is a folder named by a key over the source files' content (SHA-256), the schema, the
split settings and the code version. Loading memory-maps the arrays (``np.load(mmap_mode="r")``):
a hit starts in seconds, and the tensors live in the page cache, shared by every process on the
machine (e.g. the ranks of a torchrun job) instead of being copied into each one's private memory.
Nothing is pickled: arrays are plain ``.npy`` read with ``allow_pickle=False``, the rest is JSON.

Content hashing: a full SHA-256 of each source file, because a size + mtime + sampled-blocks key
misses same-length edits inside a CSV (one amount changed from 1.5 to 1.6). Hashing runs at about
0.8 GB/s here (HI-Small: under a second), and a digest memo keyed by (size, mtime, ctime, inode)
spares even that on later runs; any change of them makes the file hashed again. An entry's own
arrays are hashed the same way: their SHA-256s are recorded when it is built, and a load re-hashes
an array only when the memo says it changed since it was last hashed (a write into it, a copy).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch_frame

from relssl.data.datasets import resolve
from relssl.data.paths import data_home
from relssl.data.encoding import EncodedTable, column_infos, stats_from_json, stats_to_json
from relssl.data.ingest import CHUNK_BYTES
from relssl.data.database import Database
from relssl.data.entity_tasks import EntityTask
from relssl.data.prepare import DatabaseGraph, PreparedData, prepare, prepare_database
from relssl.errors import RelsslError
from relssl.files import check_free, pid_alive, write_text
from relssl.version import __version__

FORMAT = 6  # bump when the encoding or the entry layout changes: old entries are then never read
_STYPES = {s.value: s for s in (torch_frame.numerical, torch_frame.categorical, torch_frame.timestamp)}


def default_cache_dir() -> Path:
    """$RELSSL_CACHE, else ``cache`` under the data home ($RELSSL_HOME or ./data)."""
    return Path(os.environ["RELSSL_CACHE"]) if "RELSSL_CACHE" in os.environ else data_home() / "cache"


def file_digest(path: Path, cache_dir: Path | None) -> str:
    """SHA-256 of the file's bytes, remembered per (path, size, mtime, ctime, inode) in
    ``cache_dir/digests.json`` (None: not remembered)."""
    return file_digests([path], cache_dir)[0]


def file_digests(paths: list[Path], cache_dir: Path | None) -> list[str]:
    """file_digest of each path, the memo read and written once (an entry has dozens of arrays)."""
    memo_path = cache_dir / "digests.json" if cache_dir is not None else None
    try:
        memo = json.loads(memo_path.read_text()) if memo_path is not None else {}
    except (OSError, ValueError):
        memo = {}
    digests, changed = [], False
    for path in paths:
        stat = path.stat()
        name = str(path.resolve())
        seen = memo.get(name)
        if (isinstance(seen, dict) and isinstance(seen.get("sha256"), str) and seen.get("size") == stat.st_size
                and seen.get("mtime_ns") == stat.st_mtime_ns and seen.get("ctime_ns") == stat.st_ctime_ns
                and seen.get("inode") == stat.st_ino):
            digests.append(seen["sha256"])  # ctime and inode cannot be set back by hand, as an mtime can
            continue
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
        memo[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
                      "inode": stat.st_ino, "sha256": digest.hexdigest()}
        digests.append(digest.hexdigest())
        changed = True
    if memo_path is not None and changed:
        try:
            write_text(memo_path, json.dumps(memo, indent=1))
        except OSError:  # a read-only or full cache folder: the digests stand, unremembered
            pass
    return digests


def data_digests(spec: str, cache_dir: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every file ``--data`` reads, by absolute path: what a run was trained on, so that
    ``--resume`` and an experiment's reuse can refuse a run whose data has changed since. A folder
    (a LATTICE/MMSSL export) is every file in it; data generated in memory has none."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        try:
            files = resolve(spec).files()
        except RelsslError:  # not a reader's input (a built-in recommendation set); reading says what is wrong
            files = []
    memo = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        memo.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only place: hashed without the memo
        memo = None
    files = [f for f in files if f.is_file()]  # reading names a missing one
    return {str(f.resolve()): digest for f, digest in zip(files, file_digests(files, memo))}


def cacheable(spec: str) -> bool:
    """Whether the cache can hold ``spec`` (relssl.data.readers: Amazon reviews and schemas with
    text or embedding columns are prepared in memory)."""
    return resolve(spec).cacheable


def cache_key(spec: str, fractions, seed: int, max_categories: int, cache_dir: Path,
              database: dict | None = None, on_bad_values: str = "error") -> tuple[str, dict]:
    """The entry's key and the inputs it was computed from (kept in the manifest for inspection);
    ``database``: how a database is prepared (its --table, --tables, --on-orphans)."""
    source = resolve(spec)
    schema = source.reader.key(source)  # first: it checks the file, naming what is wrong
    files = source.files()
    inputs = {
        "reader": source.reader.name,
        "files": dict(zip(map(str, files), file_digests(files, cache_dir))),
        "split": [round(float(x), 12) for x in fractions],
        "seed": seed,  # decides the split only without a time column, but cheap to include
        "max_categories": max_categories,
        "code": [__version__, FORMAT],
        **schema,
        **({"database": database} if database else {}),
        **({"on_bad_values": on_bad_values} if on_bad_values != "error" else {}),  # error: the data as it is
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    return key, inputs


def load_prepared(spec: str, fractions=(0.6, 0.2, 0.2), seed: int = 0, max_categories: int = 1000,
                  cache_dir: str | Path | None = None, chunk_bytes: int | None = None,
                  log=None, table: str | None = None, tables: list[str] | None = None,
                  on_orphans: str | None = None, on_bad_values: str = "error") -> tuple[PreparedData, bool]:
    """The prepared data of ``spec`` from the cache, building the entry first on a miss.

    Returns the data and whether it was a hit. A reader with an out-of-core ingest (IBM AML) writes
    the entry directly; other sources are prepared in memory and then stored. A database is
    prepared for ``table`` (and the pretext ``tables``), which are part of the key, as is what
    ``on_bad_values`` (relssl.data.values) did.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    database = {k: v for k, v in (("table", table), ("tables", tables or None), ("on_orphans", on_orphans))
                if v is not None}
    key, inputs = cache_key(spec, fractions, seed, max_categories, cache_dir, database, on_bad_values)
    sweep_leftovers(cache_dir)
    entry = cache_dir / key
    if entry.exists():
        problem = entry_problem(entry)
        if problem is None:
            return read_entry(entry), True
        warnings.warn(f"cache entry {entry}: {problem}; rebuilding it")
        stale = entry.with_name(f".{key}-{owner()}-stale")
        try:  # moved aside first: a concurrent reader never sees half a folder
            entry.rename(stale)
        except OSError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    if log:
        log(f"preparing {spec} into the cache at {entry} (later runs load it from there)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-{owner()}-", dir=cache_dir))
    try:
        source = resolve(spec)
        if source.reader.ingest is not None:  # out of core, straight into the entry
            # about 1.7x the CSV: the arrays plus their float64/int64 staging (ingest.py)
            check_free(cache_dir, 2 * sum(f.stat().st_size for f in source.files()), f"cache entry {entry}")
            arrays, meta = source.reader.ingest(source.path, tmp, fractions, max_categories,
                                                chunk_bytes or CHUNK_BYTES, on_bad_values)
        else:
            data = source.read(False, on_orphans, on_bad_values)
            prep = (prepare_database(data, table, fractions, seed, max_categories, pretext=tables or None)
                    if isinstance(data, Database) else prepare(data, fractions, seed, max_categories))
            arrays, meta = prepared_arrays(prep)
            check_free(cache_dir, sum(a.nbytes for a in arrays.values()), f"cache entry {entry}")
        write_entry(tmp, arrays, {**meta, "key": key, "inputs": inputs})
        try:
            tmp.rename(entry)
        except OSError:  # another process stored the same entry first: use theirs
            if not (entry / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_entry(entry), False


def owner() -> str:
    """``HOST.PID``: who builds a hidden folder in the cache (a cache may be shared by machines)."""
    return f"{socket.gethostname().replace('-', '_')}.{os.getpid()}"


_LEFTOVER = re.compile(r"^\.[0-9a-f]{24}-(?P<host>[^-]+)\.(?P<pid>\d+)-")


def sweep_leftovers(cache_dir: Path) -> None:
    """Remove the hidden folders (``.KEY-HOST.PID-*``: an entry being built, or a damaged one moved
    aside) of this machine's processes that are gone: a build killed mid-way, even by SIGKILL,
    leaves nothing for good. Another machine's, and anything not named so, are left alone."""
    host = socket.gethostname().replace("-", "_")
    for path in cache_dir.iterdir():
        match = _LEFTOVER.match(path.name)
        if match and match["host"] == host and path.is_dir() and not pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)


def prepared_arrays(prep: PreparedData) -> tuple[dict[str, np.ndarray], dict]:
    """An in-memory PreparedData as entry arrays and metadata."""
    if prep.database is not None:
        return database_arrays(prep)
    arrays = {"split": prep.split}
    for name in ("src", "dst", "time"):
        if getattr(prep, name) is not None:
            arrays[name] = getattr(prep, name).numpy()
    tables = {}
    for table, enc in (("events", prep.events), ("entities", prep.entities)):
        if enc is not None:
            tables[table] = table_arrays(table, enc, arrays)
    name = prep.data.name if prep.data is not None else ""
    return arrays, {"name": name, "num_entities": prep.num_entities, "tables": tables, "mask_groups": prep.mask_groups}


def table_arrays(prefix: str, enc: EncodedTable, arrays: dict) -> dict:
    """An encoded table's tensors into ``arrays`` (``<prefix>.<stype>``); its names and statistics."""
    for stype in enc.tf.stypes:
        arrays[f"{prefix}.{stype.value}"] = enc.tf.feat_dict[stype].numpy()
    return {"col_names": {s.value: list(cols) for s, cols in enc.tf.col_names_dict.items()}, "col_stats": enc.col_stats}


def database_arrays(prep: PreparedData) -> tuple[dict[str, np.ndarray], dict]:
    """A database's prepared views: every table's encoding (and labels kept as history), times,
    key links, and each pretext table's split."""
    db, arrays, tables = prep.database, {}, {}
    views = prep.views or {db.names[db.seed_table]: prep}
    for t, name in enumerate(db.names):
        if db.tables[t] is not None:
            tables[f"table{t}"] = table_arrays(f"table{t}", db.tables[t], arrays)
        if db.history and db.history[t] is not None:
            tables[f"history{t}"] = table_arrays(f"history{t}", db.history[t], arrays)
        if db.times[t] is not None:
            arrays[f"time{t}"] = db.times[t].numpy()
        if db.label_times and db.label_times[t] is not None:
            arrays[f"label_time{t}"] = db.label_times[t].numpy()
    links = []
    for j, ((child, key), (parent, rows)) in enumerate(db.links.items()):
        arrays[f"link{j}"] = rows.numpy()
        links.append([child, key, parent])
    for name, view in views.items():
        arrays[f"split{db.names.index(name)}"] = view.split
    meta = {"names": db.names, "num_rows": db.num_rows, "seed_table": db.seed_table,
            "cuts": None if db.cuts is None else [int(c) for c in db.cuts], "links": links,
            "pretext": db.pretext, "views": list(views), "tasks": {n: asdict(t) for n, t in db.tasks.items()},
            "mask_groups": {name: view.mask_groups for name, view in views.items()}}
    return arrays, {"name": prep.data.name if prep.data is not None else "", "num_entities": 0, "tables": tables,
                    "database": meta}


def write_entry(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Arrays as ``<name>.npy`` (those already memory-mapped there are kept) and manifest.json last,
    so an entry with a manifest is complete. The manifest records each array's SHA-256: a byte
    changed inside one (an index beyond its table: an allocation of petabytes) is found on load."""
    for name, arr in arrays.items():
        if not (isinstance(arr, np.memmap) and Path(arr.filename) == (folder / f"{name}.npy").resolve()):
            np.save(folder / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    meta = dict(meta)
    meta["tables"] = {t: {"col_names": v["col_names"], "col_stats": stats_to_json(v["col_stats"])}
                      for t, v in meta["tables"].items()}
    meta["format"] = FORMAT
    # read back from the files: an ingest's memory maps write through the page cache
    digests = file_digests([folder / f"{name}.npy" for name in arrays], None)
    meta["arrays"] = {name: {"dtype": str(arr.dtype), "shape": list(arr.shape), "sha256": digest}
                      for (name, arr), digest in zip(arrays.items(), digests)}
    meta["checksum"] = manifest_checksum(meta)
    (folder / "manifest.json").write_text(json.dumps(meta, indent=1))


def manifest_checksum(meta: dict) -> str:
    """SHA-256 of a manifest's content without its checksum: an edited statistic or array list shows."""
    return hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True)
                          .encode()).hexdigest()


def entry_problem(folder: Path) -> str | None:
    """What is wrong with a cache entry (None: nothing): its manifest missing, unreadable, edited
    or of another format, or an array missing, of another dtype or shape, or of other bytes than
    it records. The bytes are re-hashed only for an array whose size, mtime, ctime or inode
    differ from when the cache's digest memo last hashed it (the first load after a build hashes
    them all: about 0.2 s for a 1M-row IBM AML entry, 129 MB; later ones, a stat of each)."""
    try:
        meta = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return "no manifest.json"
    except (OSError, ValueError):
        return "manifest.json is unreadable"
    if meta.get("format") != FORMAT:
        return f"format {meta.get('format')}, expected {FORMAT}"
    if meta.get("checksum") != manifest_checksum(meta):
        return "manifest.json does not match its checksum (edited or damaged)"
    for name, info in meta.get("arrays", {}).items():
        try:
            arr = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return f"array {name}.npy is missing or unreadable"
        if str(arr.dtype) != info["dtype"] or list(arr.shape) != info["shape"]:
            return f"array {name}.npy is {arr.dtype} {list(arr.shape)}, the manifest says {info['dtype']} {info['shape']}"
    names = list(meta.get("arrays", {}))
    for name, digest in zip(names, file_digests([folder / f"{n}.npy" for n in names], folder.parent)):
        if digest != meta["arrays"][name].get("sha256"):
            return f"array {name}.npy does not match its SHA-256 in the manifest (damaged or edited)"
    return None


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
    if "database" in meta:
        return _database_entry(folder, meta["database"], tables, tensor)
    split = np.load(folder / "split.npy", mmap_mode="r", allow_pickle=False)
    return PreparedData(None, split, tables["events"], tables.get("entities"), tensor("src"), tensor("dst"),
                        tensor("time"), meta["num_entities"], meta.get("mask_groups", []))


def _database_entry(folder: Path, meta: dict, tables: dict, tensor) -> PreparedData:
    """A database entry's views (relssl.data.prepare.prepare_database), the seed table's first."""
    count = len(meta["names"])
    has_history = any(f"history{t}" in tables for t in range(count))
    splits = {meta["names"].index(name): np.load(folder / f"split{meta['names'].index(name)}.npy", mmap_mode="r",
                                                 allow_pickle=False) for name in meta["views"]}
    graph = DatabaseGraph(meta["names"], meta["num_rows"], meta["seed_table"],
                          [tables.get(f"table{t}") for t in range(count)], [tensor(f"time{t}") for t in range(count)],
                          {(child, key): (parent, tensor(f"link{j}")) for j, (child, key, parent) in enumerate(meta["links"])},
                          None if meta["cuts"] is None else tuple(meta["cuts"]),
                          [tables.get(f"history{t}") for t in range(count)] if has_history else [], meta["pretext"],
                          splits, tasks={n: EntityTask(**t) for n, t in meta.get("tasks", {}).items()},
                          label_times=[tensor(f"label_time{t}") for t in range(count)])
    views = {}
    for name in meta["views"]:
        t = meta["names"].index(name)
        views[name] = PreparedData(None, splits[t], graph.tables[t], None, None, None, graph.times[t],
                                   mask_groups=meta["mask_groups"][name], database=replace(graph, seed_table=t))
    for view in views.values():
        view.views = views
    return views[meta["names"][meta["seed_table"]]]
