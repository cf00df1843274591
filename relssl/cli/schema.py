"""relssl schema infer / check: draft a multi-table schema from files, and validate one."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from relssl.data.database import ON_ORPHANS
from relssl.errors import RelsslError
from relssl.files import write_text


def cmd_schema_infer(args: argparse.Namespace) -> None:
    from relssl.data.infer import draft_schema

    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise RelsslError(f"--out {out}: the file exists; choose another name")
    # written: paths as the file's own folder reads them; printed: relative to the data's folder
    draft = draft_schema(args.path, out.parent if out is not None else None)
    text = ("# Draft by `relssl schema infer`: check every guess (types, keys, time) before training.\n"
            + yaml.safe_dump(draft, sort_keys=False))
    if out is not None:
        write_text(out, text)
        print(f"wrote {out}; its table paths are relative to its folder (absolute where outside it)")
    else:
        print(text, end="")


def cmd_schema_check(args: argparse.Namespace) -> None:
    from relssl.data.datasets import builtin_names, resolve
    from relssl.data.schema import load_database, load_schema, read_yaml
    from relssl.data.sqlite import is_sqlite, read_sqlite

    path, base = Path(args.file), args.base
    if args.file in builtin_names():
        source = resolve(args.file)
        path, base = source.path, base or source.base
    if path.is_file() and is_sqlite(path):
        print(read_sqlite(path, args.on_orphans or "error").summary())
        return
    spec = read_yaml(path)
    if isinstance(spec, dict) and "tables" in spec:
        print(load_database(path, base, args.on_orphans).summary())
        return
    data = load_schema(path, base)  # the single event table form (events:, entities:)
    graph = (f"{data.num_entities:,} entities, each event an edge from source to target" if data.has_graph
             else "a single table (no keys)")
    print(f"dataset '{data.name}': {data.num_events:,} events with {len(data.col_stypes)} feature column(s); {graph}"
          + (f"; entity table with {len(data.entity_col_stypes)} feature column(s)" if data.entities is not None else ""))


def add_schema_parser(sub) -> None:
    p = sub.add_parser("schema", help="draft a multi-table schema from files, or validate one")
    schema_sub = p.add_subparsers(dest="schema_command", required=True)
    infer = schema_sub.add_parser("infer", help="print a draft YAML schema for a folder of CSV/TSV/Parquet files or "
                                                "a SQLite file (types, keys and time guessed; edit before use)")
    infer.add_argument("path", help="a folder of table files, or a SQLite file")
    infer.add_argument("--out", help="write the draft here instead of printing it; its table paths are then relative "
                                     "to its folder (absolute where outside it), so it works where it is written")
    infer.set_defaults(func=cmd_schema_infer)
    check = schema_sub.add_parser("check", help="validate a schema (or a SQLite file) and print the graph it builds: "
                                                "tables, rows, key links, orphans, time ranges")
    check.add_argument("file", help="a YAML schema, a SQLite file or a built-in name (e.g. portal, amlsim)")
    check.add_argument("--base", help="folder the schema's table paths start from (default: the schema's)")
    check.add_argument("--on-orphans", choices=ON_ORPHANS,
                       help="foreign key values missing from the table they reference: error, drop the rows, or "
                            "keep them unlinked (default: the schema's on_orphans, else error)")
    check.set_defaults(func=cmd_schema_check)
