"""`relssl predict`: a fine-tuned run's predictions for new rows, as one Parquet file.

The rows of ``data`` (a file of the run's format) are encoded with the run's saved preprocessing
(relssl.data.fitted) and represented as in its task (events, or entities), with keyed neighbour
draws and every row visible up to its own time (relssl.embed). Columns: ``kind`` ("event" or
"node"), ``id`` (the event's row in the file, or the entity id), ``key_<column>`` for entities, then
- binary: ``score`` (the positive class's probability) and ``prediction`` (the positive class
  where the score reaches the threshold chosen on validation, else the other class);
- multiclass: ``prob_<class>`` per class and ``prediction``, the likeliest class;
- regression: ``prediction``, in the label's units.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relssl.data.fitted import load_new, load_preprocessing, prepare_new
from relssl.data.splits import TEST
from relssl.data.text import TextEmbedder
from relssl.errors import RelsslError
from relssl.eval.finetune import FinetuneConfig, DownstreamModel, NO_BACKBONE
from relssl.embed import key_columns
from relssl.eval.represent import Representer
from relssl.nn.backbone import Backbone
from relssl.nn.gnn import mlp
from relssl.train import seeding
from relssl.train.pretrain import resolve_device
from relssl.train.run_folder import RunFolder


def predict(run_dir: str | Path, data: str, out: str | Path | None = None, device: str = "auto",
            on_bad_values: str | None = None) -> pd.DataFrame:
    """Predict the rows (events or entities, as the run's task) of ``data``; write ``out`` (None:
    only return the table). ``on_bad_values``: the policy for bad numbers in ``data`` (default: the run's)."""
    out, run = None if out is None else Path(out), RunFolder(run_dir, writer=False)
    if out is not None and out.suffix != ".parquet":
        raise RelsslError(f"--out {out}: expected a .parquet file name")
    if not run.finished:
        raise RelsslError(f"--run {run_dir}: not a finished finetune run folder (no final.json)")
    if (kind := run.trained_by()) != "relssl finetune":
        raise RelsslError(f"--run {run_dir}: a run folder of `{kind}`; expected the --out folder of "
                          f"`relssl finetune` (`relssl embed` takes a pretrain run's)")
    cfg, final = FinetuneConfig.from_dict(run.config()), run.final()
    if cfg.mode in NO_BACKBONE or "target_mean" not in final:
        raise RelsslError(f"--run {run_dir}: a {cfg.mode} run" + (" keeps no model to apply" if cfg.mode in NO_BACKBONE
                                                                  else " from before predictions were possible; "
                                                                       "fine-tune it again"))
    if final["target"] == "entity":
        raise RelsslError(f"--run {run_dir}: an entity task's examples come from its cut-off times, which new rows "
                          f"do not have; predict a table's rows (a TABLE.COLUMN task) instead")
    t = cfg.train
    prep = prepare_new(load_new(data, t, on_bad_values), load_preprocessing(run_dir), TextEmbedder(t.text_model))
    if final["target"] == "node" and not prep.has_graph:
        raise RelsslError(f"--data {data}: the run predicts entities; the new data has no keys linking them")
    dev = resolve_device(device)
    torch.manual_seed(t.seed)
    rep = Representer(prep, final["target"], t.model.fanouts, t.time_aware).keyed(t.seed)
    d = t.model.channels
    head = mlp(d, final["outputs"], hidden=d) if cfg.mode == "finetune" else torch.nn.Linear(d, final["outputs"])
    model = DownstreamModel(Backbone(prep, t.model), head, rep)
    run.load_weights(model, dev)
    model.to(dev)
    ids = torch.arange(prep.num_entities if final["target"] == "node" else prep.data.num_events)
    emb = rep.embed(model.backbone, ids, TEST, t.batch_size, t.seed, dev, seeding.DOWNSTREAM_EMBED)
    with torch.no_grad():
        outputs = model.head(emb.to(dev)).squeeze(-1).double().cpu()
    kind = "node" if final["target"] == "node" else "event" if prep.database is None else "row"
    frame = pd.DataFrame({"kind": kind, "id": ids.numpy()})
    if final["target"] == "node":
        frame = pd.concat([frame, key_columns(prep)], axis=1)
    frame = pd.concat([frame, _predictions(outputs, final)], axis=1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
    return frame


def _predictions(outputs: torch.Tensor, final: dict) -> pd.DataFrame:
    """Head outputs as the run's predictions (relssl.eval.finetune.Finetuner.to_scores, then the
    validation threshold or the likeliest class)."""
    if final["kind"] == "regression":
        return pd.DataFrame({"prediction": (outputs * final["target_std"] + final["target_mean"]).numpy()})
    if final["kind"] == "multiclass":
        prob = torch.softmax(outputs, -1).numpy()
        classes = np.asarray(final["classes"], dtype=object)
        frame = pd.DataFrame(prob, columns=[f"prob_{c}" for c in classes])
        frame["prediction"] = classes[prob.argmax(1)]
        return frame
    score = torch.sigmoid(outputs).numpy()
    return pd.DataFrame({"score": score, "prediction": np.where(score >= final["threshold"], final["positive_class"],
                                                                final["negative_class"])})
