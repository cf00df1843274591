"""`relssl embed`: a pre-trained backbone's embeddings as one Parquet file, for the user's own models.

One row per entity (``kind`` = "node", ``id`` = entity id, ``key_<column>`` = its original key
values, one column per key column; with two entity types ``entity`` = its type, each type filling its
own key columns) and per event (``kind`` = "event", ``id`` = the event's row in the source table,
``split`` = its temporal split), then ``emb_0 .. emb_{d-1}`` (float32). Events are represented
as in edge tasks (row + graph context, their split's graph, time-aware), entities as in node
tasks (all events) — see relssl.eval.represent. Neighbour draws are keyed by the run's seed
and each row (relssl.graph.sampler.keyed_uniform): a row's embedding does not depend on the
batch it falls in. On a database the rows are those of the run's table (or ``table``, one of the
run's ``--tables``): ``kind`` = "row", ``table`` its name, ``id`` its row, ``split``.

New rows (``data`` another file of the run's format) are encoded with the run's saved
preprocessing (relssl.data.fitted) and embedded with every row visible up to its own time
(``split`` = "new"); the run's own rows given as a new file embed exactly as from the run's data.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relssl.data.splits import SPLIT_NAMES, TEST, TRAIN, VAL
from relssl.errors import RelsslError
from relssl.eval.represent import Representer
from relssl.train import seeding
from relssl.nn.backbone import Backbone
from relssl.data.fitted import load_new, load_preprocessing, prepare_new
from relssl.data.text import TextEmbedder
from relssl.eval.finetune import load_backbone, prepare_for, pretrained_config, same_data
from relssl.train.pretrain import resolve_device


def export_embeddings(run_dir: str | Path, out: str | Path | None, data: str | None = None,
                      device: str = "auto", table: str | None = None, on_bad_values: str | None = None) -> pd.DataFrame:
    """Embed every entity and event of the run's data, or every row of a database's table; or,
    with ``data`` another file of the run's format, its rows encoded with the run's saved
    preprocessing (relssl.data.fitted; ``on_bad_values``: its policy for bad numbers, default the
    run's). Write ``out`` (None: only return the table)."""
    out = None if out is None else Path(out)
    if out is not None and out.suffix != ".parquet":
        raise RelsslError(f"--out {out}: expected a .parquet file name")
    cfg = pretrained_config(run_dir, "--run")
    new = data is not None and not same_data(data, cfg.data)
    if new:
        saved = load_preprocessing(run_dir)
        prep = prepare_new(load_new(data, cfg, on_bad_values), saved, TextEmbedder(cfg.text_model))
        if table is not None:
            if table not in prep.views:
                raise RelsslError(f"--table {table}: the run was pre-trained on the rows of "
                                  f"{', '.join(prep.views) or 'one event table'}")
            prep = prep.views[table]
    else:
        if table is not None and table in (cfg.tables or []):
            cfg = replace(cfg, table=table)
        elif table is not None and cfg.table is not None and table != cfg.table:
            raise RelsslError(f"--table {table}: the run was pre-trained on the rows of "
                              f"{', '.join(cfg.tables or [cfg.table])}")
        prep = prepare_for(cfg, str(run_dir))
        if table is not None and (prep.database is None or prep.database.names[prep.database.seed_table] != table):
            trained = cfg.tables or ([] if prep.database is None else [prep.database.names[prep.database.seed_table]])
            raise RelsslError(f"--table {table}: the run was pre-trained on the rows of "
                              f"{', '.join(trained) or 'one event table'}")
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    backbone = Backbone(prep, cfg.model)
    load_backbone(backbone, run_dir)
    backbone.to(dev)

    def embed(rep: Representer, ids: torch.Tensor, split: int) -> np.ndarray:
        return rep.embed(backbone, ids, split, cfg.batch_size, cfg.seed, dev, seeding.DOWNSTREAM_EMBED).numpy()

    frames = []
    if prep.has_graph:
        ids = torch.arange(prep.num_entities)
        keys = key_columns(prep)
        nodes = Representer(prep, "node", cfg.model.fanouts).keyed(cfg.seed)
        frames.append(_frame("node", ids.numpy(), None, embed(nodes, ids, TEST), keys))
    # Keyed draws: a row's tree, so its embedding, does not depend on which rows share its batch.
    events = Representer(prep, "edge", cfg.model.fanouts, cfg.time_aware).keyed(cfg.seed)
    db = prep.database
    for split in (TEST,) if new else (TRAIN, VAL, TEST):
        rows = prep.rows(split)
        frames.append(_frame("event" if db is None else "row", rows.numpy(), "new" if new else SPLIT_NAMES[split],
                             embed(events, rows, split)))
        if db is not None:
            frames[-1].insert(1, "table", db.names[db.seed_table])
    table = pd.concat(frames, ignore_index=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out, index=False)
    return table


def key_columns(prep) -> pd.DataFrame:
    """Each entity's original key values as ``key_<column>`` columns (and ``entity``, its type)."""
    keys = prep.data.entity_keys.astype("string").reset_index(drop=True)
    return keys.rename(columns={c: f"key_{c}" for c in keys.columns if c != "entity"})


def _frame(kind: str, ids: np.ndarray, split: str | None, emb: np.ndarray,
           keys: pd.DataFrame | None = None) -> pd.DataFrame:
    head = pd.DataFrame({"kind": kind, "id": ids, "split": pd.Series([split] * len(ids), dtype="string")})
    emb_cols = pd.DataFrame(emb.astype(np.float32), columns=[f"emb_{i}" for i in range(emb.shape[1])])
    return pd.concat([head, keys, emb_cols], axis=1)  # keys None (events): dropped by concat
