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

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch_frame
import yaml

from relssl.data.relational import RelationalData, parse_mask_groups
from relssl.data.vectors import join_vectors, read_vectors
from relssl.errors import RelsslError

STYPES = {**{s.value: s for s in (torch_frame.numerical, torch_frame.categorical, torch_frame.timestamp,
                                   torch_frame.embedding)},
          "text": torch_frame.text_embedded}
VECTOR_KEYS = ("path", "key", "keys")  # an embedding column's vector file, join column, .npy key file


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or Parquet file with pyarrow, every column as read."""
    if not path.exists():
        raise RelsslError(f"{path}: file not found")
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise RelsslError(f"{path}: cannot read table: {err}") from None
    if table.num_rows == 0:
        raise RelsslError(f"{path}: the file has no data rows")
    return table.to_pandas()


def parse_time(ser: pd.Series, source: str, unit: str | None = None, fmt: str | None = None,
               origin: str | None = None) -> pd.Series:
    """Timestamps as real datetimes at second resolution, from strings or from numbers in ``unit``."""
    try:
        if pd.api.types.is_numeric_dtype(ser):
            if unit is None:
                raise RelsslError(f"{source}: numeric timestamps need a 'unit' (s, ms, D, ...)")
            out = pd.to_datetime(ser, unit=unit, origin=origin or "unix")
        else:
            out = pd.to_datetime(ser, format=fmt)
    except (ValueError, TypeError, OverflowError) as err:
        raise RelsslError(f"{source}: unparsable timestamp ({err}); expected "
                          f"{'format ' + fmt if fmt else 'a date/time'}") from None
    if out.isna().any():
        bad = ser[out.isna()].iloc[0]
        raise RelsslError(f"{source}: missing or unparsable timestamp {bad!r}")
    return out.astype("datetime64[s]")


def epoch_seconds(ser: pd.Series) -> np.ndarray:
    """int64 seconds since the Unix epoch, whatever the datetime64 unit."""
    return ser.astype("datetime64[s]").to_numpy().astype(np.int64)


def _columns(spec: dict, where: str) -> tuple[dict, dict, dict, dict]:
    """Column specs -> (stypes, transforms, timestamp parse options, embedding vector-file specs)."""
    stypes, transforms, time_opts, vector_specs = {}, {}, {}, {}
    for col, cspec in (spec.get("columns") or {}).items():
        cspec = {"stype": cspec} if isinstance(cspec, str) else dict(cspec or {})
        stype = cspec.pop("stype", None)
        if stype not in STYPES:
            raise RelsslError(f"{where}: column '{col}': stype '{stype}' unknown; expected one of {sorted(STYPES)}")
        stypes[col] = STYPES[stype]
        if "transform" in cspec:
            transforms[col] = cspec.pop("transform")
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
        keys_path = (base / vspec["keys"]).resolve() if "keys" in vspec else None
        file = (base / vspec["path"]).resolve()
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


def _key_values(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """One hashable key per row, composite keys joined so (bank, account) pairs stay distinct."""
    if len(cols) == 1:
        return df[cols[0]].astype("string")
    return df[cols].astype("string").agg("\x1f".join, axis=1)


def schema_files(path: Path, base: Path) -> list[Path]:
    """The YAML schema and the tables it names (their content is part of the key)."""
    files = [base / t["path"] for t in schema_tables(read_yaml(path)) if "path" in t]
    for file in files:
        if not file.is_file():
            raise RelsslError(f"{path}: table file {file} not found")
    return [path, *files]


def schema_stypes(spec) -> list[str]:
    """Every column type a parsed schema declares (events and entity tables)."""
    return [column.get("stype") if isinstance(column, dict) else column
            for table in schema_tables(spec) for column in (table.get("columns") or {}).values()]


def schema_tables(spec) -> list[dict]:
    """The table mappings of a parsed schema: events, then entity tables."""
    tables = [spec.get("events")] + list((spec.get("entities") or {}).values()) if isinstance(spec, dict) else []
    return [t for t in tables if isinstance(t, dict)]


def read_yaml(path: Path):
    """A schema file's parsed YAML, or one line naming the file and what is wrong."""
    if not path.is_file():
        raise RelsslError(f"{path}: schema file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RelsslError(f"{path}: malformed YAML: {str(err).splitlines()[0]}") from None


def load_schema(path: str | Path, base_dir: str | Path | None = None) -> RelationalData:
    """Read a YAML schema; table paths are relative to ``base_dir`` (default: the YAML's folder)."""
    path = Path(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    spec = read_yaml(path)
    if not isinstance(spec, dict) or not isinstance(spec.get("events"), dict):
        raise RelsslError(f"{path}: expected a mapping with an 'events' table (see docs/schema.md)")
    unknown = set(spec) - {"name", "events", "entities"}
    if unknown:
        raise RelsslError(f"{path}: unknown top-level keys {sorted(unknown)}; expected name, events, entities")
    ev = spec["events"]
    if "path" not in ev:
        raise RelsslError(f"{path}: events: missing 'path'")
    ev_path = (base / ev["path"]).resolve()
    events = read_table(ev_path)
    stypes, transforms, time_opts, vector_specs = _columns(ev, f"{path}: events")
    labels = list(ev.get("labels") or [])
    mask_groups = []
    if ev.get("mask_groups"):
        mask_groups = parse_mask_groups(ev["mask_groups"], list(stypes), f"{path}: events: mask_groups")
    _require(events, [*(c for c in stypes if c not in vector_specs), *labels], ev_path)
    vectors = _vectors(events, vector_specs, base, ev_path)

    time_spec = ev.get("time")
    time_col, time = None, None
    if time_spec is not None:
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
                                     opts.get("format"), opts.get("origin"))

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
        src_key = _key_values(events, src_cols)
        dst_key = _key_values(events, dst_cols)
        if src_entity != dst_entity:
            # Two entity types (e.g. users and items): keep their key spaces apart.
            src_key = f"{src_entity}\x1e" + src_key
            dst_key = f"{dst_entity}\x1e" + dst_key
        table_name = src_entity if src_entity == dst_entity and src_entity in ent_specs else None
        for name in ent_specs:
            if name not in (src_entity, dst_entity):
                raise RelsslError(f"{path}: entity table '{name}' is not the entity of events.source or .target")
        if src_entity != dst_entity and ent_specs:
            raise RelsslError(f"{path}: entity feature tables are supported when source and target are "
                              f"the same entity type (got '{src_entity}' and '{dst_entity}')")
        if table_name is not None:
            espec = ent_specs[table_name]
            e_path = (base / espec["path"]).resolve()
            entities = read_table(e_path)
            entity_stypes, _, e_time_opts, e_vectors = _columns(espec, f"{path}: entities.{table_name}")
            if e_vectors:
                raise RelsslError(f"{path}: entities.{table_name}: embedding columns are supported on the "
                                  f"event table only (join the vectors to events by the entity's key)")
            entity_labels = list(espec.get("labels") or [])
            key_cols = _key_columns(espec.get("key"), f"{path}: entities.{table_name}.key")
            _require(entities, [*key_cols, *entity_stypes, *entity_labels], e_path)
            for col, stype in entity_stypes.items():
                if stype == torch_frame.timestamp:
                    opts = e_time_opts.get(col, {})
                    entities[col] = parse_time(entities[col], f"{e_path}: column '{col}'", opts.get("unit"),
                                               opts.get("format"), opts.get("origin"))
            keys = _key_values(entities, key_cols)
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
            entity_keys = pd.DataFrame({"key": np.asarray(uniques, dtype=object)})
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
