"""A RelBench ``Database`` as a relssl Database (the ``relbench`` extra): each RelBench ``Table``
gives its ``df``, ``pkey_col``, ``fkey_col_to_pkey_table`` and ``time_col``; RelBench declares no
column types, so each remaining column's stype is read from its values
(relssl.data.tables.guess_stype) unless ``stypes`` names it; columns of lists (multi-category)
are left out.

    from relbench.datasets import get_dataset          # or any relbench.base.Database
    from relssl.data.relbench_reader import from_relbench
    from relssl.data.prepare import prepare_database
    db = from_relbench(get_dataset("rel-f1").get_db(), labels={"results": ["position"]})
    prep = prepare_database(db, "results")            # then relssl.train.pretrain.Pretrainer(cfg, prep)
"""
from __future__ import annotations

from relssl.data.database import Database, ForeignKey, Table
from relssl.data.tables import STYPES, epoch_seconds, guess_stype, parse_time
from relssl.errors import RelsslError


def from_relbench(rb_db, name: str = "relbench", stypes: dict[str, dict[str, str]] | None = None,
                  labels: dict[str, list[str]] | None = None, on_orphans: str = "keep-null") -> Database:
    """``stypes[table][column]`` (numerical, categorical, timestamp, text) overrides a guess, and a
    column given None there is left out; ``labels[table]`` are label columns (never features).
    RelBench allows foreign keys that link nowhere, hence ``keep-null`` by default."""
    stypes, labels = stypes or {}, labels or {}
    known = set(getattr(rb_db, "table_dict", {}))
    unknown_tables = sorted((set(stypes) | set(labels)) - known)
    if unknown_tables:
        raise RelsslError(f"from_relbench: no table(s) {unknown_tables}; the database has {sorted(known)}")
    tables = {}
    for table_name, rb in getattr(rb_db, "table_dict", {}).items():
        df = rb.df.reset_index(drop=True).copy()
        fks = [ForeignKey((col,), target) for col, target in rb.fkey_col_to_pkey_table.items()]
        keys = {rb.pkey_col, rb.time_col, *rb.fkey_col_to_pkey_table} - {None}
        wanted = dict(stypes.get(table_name, {}))
        unknown = [c for c in [*wanted, *labels.get(table_name, [])] if c not in df]
        if unknown:
            raise RelsslError(f"from_relbench: table '{table_name}' has no column(s) {unknown}")
        col_stypes = {}
        for col in df.columns:
            if col in keys or col in labels.get(table_name, []):
                continue
            stype = wanted[col] if col in wanted else guess_stype(df[col])
            if stype is None:
                continue
            if stype not in STYPES or stype == "embedding":
                raise RelsslError(f"from_relbench: table '{table_name}' column '{col}': stype {stype!r}; expected "
                                  f"numerical, categorical, timestamp or text")
            col_stypes[col] = STYPES[stype]
            if stype == "timestamp":
                df[col] = parse_time(df[col], f"table '{table_name}' column '{col}'", allow_missing=True)
        time = None
        if rb.time_col is not None:
            time = epoch_seconds(parse_time(df[rb.time_col], f"table '{table_name}' time column '{rb.time_col}'"))
        tables[table_name] = Table(table_name, df, col_stypes, (rb.pkey_col,) if rb.pkey_col else (), fks,
                                   rb.time_col, time, list(labels.get(table_name, [])))
    if not tables:
        raise RelsslError("from_relbench: expected a relbench Database (an object with a table_dict of Tables)")
    return Database(name, tables).check(on_orphans)
