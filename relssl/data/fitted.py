"""A run's fitted preprocessing, saved beside its weights as preprocessing.json, and new rows
encoded with it: the vocabularies and statistics the model was trained with, never refitted on
the new file (refitting would re-rank the categories under the weights and silently change what
every index means).

Event data (one event table, its entities) and databases (every table's columns, the labels kept
as history) alike; a database's new file must hold the run's tables and keys, in the same order.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch_frame

from relssl.data.encoding import EncodedTable, encode_table, stats_from_json, stats_to_json
from relssl.data.database import Database
from relssl.data.prepare import DatabaseGraph, PreparedData, database_view, label_history, label_stypes, long_tensor
from relssl.data.relational import RelationalData
from relssl.data.splits import TEST
from relssl.data.values import check_policy
from relssl.errors import RelsslError

FILE = "preprocessing.json"
FORMAT = 1


def _stype_name(enc: EncodedTable, name: str) -> str:
    info = next(c for c in enc.columns if c.name == name)
    return torch_frame.text_embedded.value if info.text else info.stype.value


def _table(enc: EncodedTable | None) -> dict | None:
    if enc is None:
        return None
    return {"columns": {c.name: _stype_name(enc, c.name) for c in enc.columns}, "col_stats": stats_to_json(enc.col_stats)}


def fitted_preprocessing(prep: PreparedData) -> dict:
    """What encoding new rows needs, as JSON: per table, each column's stype and training statistics."""
    db = prep.database
    if db is not None:
        return {"format": FORMAT, "kind": "database", "names": db.names, "links": [key for _, key in db.links],
                "seed": db.names[db.seed_table], "pretext": [db.names[t] for t in db.pretext],
                "tables": [_table(enc) for enc in db.tables], "timed": [t is not None for t in db.times],
                "history": [_table(enc) for enc in db.history] if db.history else []}
    return {"format": FORMAT, "kind": "events", "events": _table(prep.events), "entities": _table(prep.entities),
            "timed": prep.time is not None}


def save_preprocessing(run_dir: Path, prep: PreparedData) -> None:
    from relssl.files import write_text

    write_text(Path(run_dir) / FILE, json.dumps(fitted_preprocessing(prep), indent=1))


def load_preprocessing(run_dir: str | Path) -> dict:
    path = Path(run_dir) / FILE
    if not path.exists():
        raise RelsslError(f"{run_dir}: no {FILE}; the run predates saved preprocessing: train it again to "
                          f"use it on new rows")
    raw = json.loads(path.read_text())
    if raw.get("format") != FORMAT:
        raise RelsslError(f"{path}: format {raw.get('format')}, expected {FORMAT}")
    return raw


def _check_columns(saved: dict, stypes: dict, where: str) -> None:
    """The new table has the run's columns with the run's stypes."""
    have = {c: s.value for c, s in stypes.items()}
    missing = [c for c in saved["columns"] if c not in have]
    if missing:
        raise RelsslError(f"{where}: column(s) {missing} of the trained run are missing; it has {sorted(have)}")
    differ = [f"'{c}' is {have[c]}, the run's is {s}" for c, s in saved["columns"].items() if have[c] != s]
    if differ:
        raise RelsslError(f"{where}: {'; '.join(differ)}")


def load_new(data: str, cfg, on_bad_values: str | None = None):
    """A new file read as the run (``cfg``, a PretrainConfig) read its data, except that a row whose
    foreign key links nowhere stays, unlinked (with a warning counting them), and a bad number is
    missing where the run dropped its row: no row is dropped, so every output ``id`` is a row of
    the file, in its order. ``on_bad_values`` replaces the run's policy (drop reads as missing too)."""
    from relssl.data.datasets import load_dataset

    policy = on_bad_values or cfg.on_bad_values
    check_policy(policy)
    loaded = load_dataset(data, cfg.skip_bad_rows, "keep-null", "missing" if policy == "drop" else policy)
    if isinstance(loaded, Database) and sum(loaded.orphans.values()):
        warnings.warn(f"--data {data}: {sum(loaded.orphans.values()):,} foreign-key value(s) link no row; those rows "
                      f"are kept, unlinked")
    return loaded


def prepare_new(data: RelationalData | Database, saved: dict, text=None) -> PreparedData:
    """New rows encoded with a run's saved preprocessing: every row in one split (the test split's:
    every row visible, each tree cut at its own row's time), the run's columns only."""
    if (saved["kind"] == "database") != isinstance(data, Database):
        raise RelsslError(f"--data {data.name}: the run was trained on "
                          f"{'a database of tables linked by keys' if saved['kind'] == 'database' else 'one event table'}"
                          f"; the new data is {'a database' if isinstance(data, Database) else 'one event table'}")
    if isinstance(data, Database):
        return _prepare_new_database(data, saved, text)
    events = saved["events"]
    if saved.get("timed") and data.time is None:
        raise RelsslError(f"--data {data.name}: the run's events have a time column; the new ones have none")
    _check_columns(events, data.col_stypes, f"--data {data.name} (events)")
    stypes = {c: data.col_stypes[c] for c in events["columns"]}
    encoded = encode_table(data.events, stypes, np.zeros(0, dtype=np.int64), data.transforms, table="events",
                           vectors=data.vectors, text=text, fitted=stats_from_json(events["col_stats"]))
    entities = None
    if saved.get("entities") is not None:
        if data.entities is None:
            raise RelsslError(f"--data {data.name}: the run was trained with entity features; the new data has none")
        _check_columns(saved["entities"], data.entity_col_stypes, f"--data {data.name} (entities)")
        estypes = {c: data.entity_col_stypes[c] for c in saved["entities"]["columns"]}
        entities = encode_table(data.entities, estypes, np.zeros(0, dtype=np.int64), {}, table="entities", text=text,
                                fitted=stats_from_json(saved["entities"]["col_stats"]))

    split = np.full(data.num_events, TEST, dtype=np.int8)
    return PreparedData(data, split, encoded, entities, long_tensor(data.src), long_tensor(data.dst), long_tensor(data.time),
                        data.num_entities, data.mask_groups)


def _prepare_new_database(db: Database, saved: dict, text=None) -> PreparedData:
    """A new database (the run's tables and keys, other rows) encoded with the run's statistics;
    every row of every table visible to every tree up to its seed's time."""
    names = list(db.tables)
    if names != saved["names"]:
        raise RelsslError(f"--data {db.name}: tables {names}; the run was trained on {saved['names']} (in that order)")
    index = {n: i for i, n in enumerate(names)}
    links = {(index[name], str(fk)): (index[fk.table], torch.from_numpy(db.links[name, i]).long())
             for name, t in db.tables.items() for i, fk in enumerate(t.foreign_keys)}
    if [key for _, key in links] != saved["links"]:
        raise RelsslError(f"--data {db.name}: foreign keys {[key for _, key in links]}; the run's are {saved['links']}")
    untimed = [n for n, timed in zip(names, saved["timed"]) if timed and db.tables[n].time is None]
    if untimed:  # its trees would not be cut at each row's time: later rows would reach earlier ones
        raise RelsslError(f"--data {db.name}: table(s) {untimed} have a time column in the run; the new schema gives "
                          f"none")
    no_rows = np.zeros(0, dtype=np.int64)
    tables, history = [], []
    for name, fitted in zip(names, saved["tables"]):
        t = db.tables[name]
        if fitted is None:
            tables.append(None)
        else:
            _check_columns(fitted, t.col_stypes, f"--data {db.name} (table '{name}')")
            tables.append(encode_table(t.df, {c: t.col_stypes[c] for c in fitted["columns"]}, no_rows, t.transforms,
                                       table=name, vectors=t.vectors, text=text,
                                       fitted=stats_from_json(fitted["col_stats"])))
    for name, fitted in zip(names, saved["history"] or [None] * len(names)):
        if fitted is None:
            history.append(None)
            continue
        stypes = label_stypes(db.tables[name])
        _check_columns(fitted, stypes, f"--data {db.name} (table '{name}', labels as history)")
        history.append(label_history(db.tables[name], no_rows, 0, stats_from_json(fitted["col_stats"]),
                                     {c: stypes[c] for c in fitted["columns"]}))

    pretext = [index[n] for n in saved["pretext"]]
    splits = {t: np.full(len(db.tables[names[t]]), TEST, dtype=np.int8) for t in pretext}
    graph = DatabaseGraph(names, [len(db.tables[n]) for n in names], index[saved["seed"]], tables,
                          [long_tensor(db.tables[n].time) for n in names], links, None,
                          history if saved["history"] else [], pretext, splits, tasks=db.tasks,
                          label_times=[long_tensor(db.tables[n].label_time) for n in names])
    views = {names[t]: database_view(db, graph, names[t], splits[t]) for t in pretext}
    for view in views.values():
        view.views = views
    return views[saved["seed"]]
