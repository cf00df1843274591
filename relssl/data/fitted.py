"""A run's fitted preprocessing, saved beside its weights as preprocessing.json, and new rows
encoded with it: the vocabularies and statistics the model was trained with, never refitted on
the new file (refitting would re-rank the categories under the weights and silently change what
every index means).

Event data (one event table, its entities) only, so far: a database's rows are embedded from its
run's own data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch_frame

from relssl.data.encoding import EncodedTable, encode_table, stats_from_json, stats_to_json
from relssl.data.prepare import PreparedData
from relssl.data.relational import RelationalData
from relssl.data.splits import TEST
from relssl.errors import RelsslError

FILE = "preprocessing.json"
FORMAT = 1


def _stype_name(enc: EncodedTable, name: str) -> str:
    info = next(c for c in enc.columns if c.name == name)
    return torch_frame.text_embedded.value if info.text else info.stype.value


def fitted_preprocessing(prep: PreparedData) -> dict:
    """What encoding new rows needs, as JSON: per table, each column's stype and training statistics."""
    if prep.database is not None:
        return {"format": FORMAT, "kind": "database"}

    def table(enc: EncodedTable | None) -> dict | None:
        if enc is None:
            return None
        return {"columns": {c.name: _stype_name(enc, c.name) for c in enc.columns},
                "col_stats": stats_to_json(enc.col_stats)}

    return {"format": FORMAT, "kind": "events", "events": table(prep.events), "entities": table(prep.entities)}


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
    if raw["kind"] != "events":
        raise RelsslError(f"{run_dir}: new rows of a database are not supported yet; embed the run's own "
                          f"data (without --data)")
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


def prepare_new(data: RelationalData, saved: dict, text=None) -> PreparedData:
    """New rows encoded with a run's saved preprocessing: every row in one split (the test split's:
    every event visible, each tree cut at its own row's time), the run's columns only."""
    if not isinstance(data, RelationalData):
        raise RelsslError(f"--data: '{data.name}' is a database; new rows of a database are not supported yet")
    events = saved["events"]
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

    def tensor(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    split = np.full(data.num_events, TEST, dtype=np.int8)
    return PreparedData(data, split, encoded, entities, tensor(data.src), tensor(data.dst), tensor(data.time),
                        data.num_entities, data.mask_groups)
