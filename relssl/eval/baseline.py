"""The baselines pre-training must beat: gradient-boosted trees (LightGBM) on raw features, and on
raw plus causal graph features.

An event's raw features are its own encoded cells (numbers after any declared transform,
category codes, timestamp parts) — the "LightGBM on raw columns" baseline of the AML literature;
a database's row adds the cells of the rows its foreign keys reference (the flattened row).
An entity's are its feature row plus, over all events (the graph node tasks see), its in- and
out-degree and the mean, max and sum of each numerical event column on each side.

LightGBM rather than scikit-learn's HistGradientBoosting: on the same features, one thread, it
fitted 4-5x faster and scored at least as well (generated AML edge task, 100k rows, raw + graph
features: test PR-AUC 0.047 vs 0.029, F1 0.096 vs 0.066, 2.8 s vs 12.5 s per fit; AMLSim
``node:isFraud``: PR-AUC 0.811 vs 0.812, F1 0.805 vs 0.788, 0.26 s vs 1.3 s).
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch_frame
from lightgbm import LGBMClassifier, LGBMRegressor, early_stopping

from relssl.data.encoding import EncodedTable
from relssl.data.entity_tasks import EntityTask, TaskRows
from relssl.data.prepare import PreparedData
from relssl.errors import RelsslError
from relssl.eval.graph_features import CausalGraph, edge_features, node_features, one_thread
from relssl.metrics.classification import selection_score

MAX_GBDT_CATEGORIES = 255  # wider vocabularies (account ids, say) enter as ordered codes: category splits overfit them


def table_matrix(enc: EncodedTable) -> tuple[np.ndarray, np.ndarray]:
    """Every encoded cell as a float column (unknown category -> NaN), and which are categorical."""
    parts, categorical = [], []
    for stype, feat in enc.tf.feat_dict.items():
        if stype == torch_frame.embedding:  # text/embedding vectors: every component a feature
            feat = feat.values
        x = feat.reshape(len(feat), -1).double().numpy()
        if stype == torch_frame.categorical:
            x = np.where(x < 0, np.nan, x)
            sizes = [c.num_categories for c in enc.columns if c.stype == stype]
            categorical += [0 < n <= MAX_GBDT_CATEGORIES for n in sizes]
        else:
            categorical += [False] * x.shape[1]
        parts.append(x)
    return np.concatenate(parts, axis=1), np.array(categorical, dtype=bool)


def entity_matrix(prep: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """Per entity: its own features, then degree and numerical aggregates of its events by side."""
    n = prep.num_entities
    numeric = prep.events.tf.feat_dict.get(torch_frame.numerical)
    values = pd.DataFrame(numeric.double().numpy() if numeric is not None else np.zeros((prep.data.num_events, 0)))
    parts, own_categorical = [], np.zeros(0, dtype=bool)
    if prep.entities is not None:
        own, own_categorical = table_matrix(prep.entities)
        parts.append(own)
    for side in (prep.src.numpy(), prep.dst.numpy()):
        parts.append(np.bincount(side, minlength=n)[:, None].astype(np.float64))
        if values.shape[1]:
            parts.append(values.groupby(side).agg(["mean", "max", "sum"]).reindex(range(n)).to_numpy(np.float64))
    x = np.concatenate(parts, axis=1)
    categorical = np.zeros(x.shape[1], dtype=bool)
    categorical[:len(own_categorical)] = own_categorical
    return x, categorical


def flattened_matrix(prep: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """A database's seed-table rows flattened (RelBench's LightGBM rung): the row's own cells, then
    the cells of each row it references, one foreign key after another (NaN where the key is
    unlinked, or where the referenced row is later than the row: nothing from its future)."""
    db = prep.database
    x, categorical = table_matrix(prep.events)
    parts, masks = [x], [categorical]
    for (child, _), (parent, rows) in db.links.items():
        enc = db.tables[parent]
        if child != db.seed_table or enc is None:
            continue
        px, pcat = table_matrix(enc)
        rows = rows.numpy()
        usable = rows >= 0
        if db.times[parent] is not None and prep.time is not None:
            usable &= db.times[parent].numpy()[rows.clip(min=0)] <= prep.time.numpy()
        joined = np.full((len(rows), px.shape[1]), np.nan)
        joined[usable] = px[rows[usable]]
        parts.append(joined)
        masks.append(pcat)
    return np.concatenate(parts, axis=1), np.concatenate(masks)


def raw_features(prep: PreparedData, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix over all events (edge tasks; a database's rows flattened with the rows they
    reference) or entities (node tasks), and the categorical mask."""
    if target == "edge":
        return flattened_matrix(prep) if prep.database is not None else table_matrix(prep.events)
    return entity_matrix(prep)


def graph_features(prep: PreparedData, target: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw features plus causal graph features (relssl.eval.graph_features) of ``rows`` (events or
    entities), and the categorical mask: the "graph features" rung of the AML baseline ladder."""
    x, categorical = raw_features(prep, target)
    with one_thread():
        graph = CausalGraph.from_prepared(prep)
        if target == "edge":
            extra = edge_features(graph, torch.from_numpy(rows)).to_numpy(np.float64)
        else:
            extra = node_features(graph).to_numpy(np.float64)[rows]
    return np.concatenate([x[rows], extra], axis=1), np.concatenate([categorical, np.zeros(extra.shape[1], dtype=bool)])


def cutoff_matrix(prep: PreparedData, task: EntityTask, examples: TaskRows) -> tuple[np.ndarray, np.ndarray]:
    """An entity task's examples flattened, all from before their cut-off time: the entity row's own
    cells, then, per foreign key into the entity's table, how many rows link to it up to the
    cut-off, how many in the last window, and the seconds since the latest (NaN: none); a static
    table's links are counted whole. RelBench's LightGBM rung reads the entity row alone; these
    counts are the recency and frequency a churn baseline is built on."""
    db = prep.database
    e = db.names.index(task.entity)
    parts, categorical = [], []
    if db.tables[e] is not None:
        own, own_categorical = table_matrix(db.tables[e])
        parts.append(own[examples.entity])
        categorical.append(own_categorical)
    entity, cutoff = examples.entity, examples.time
    for (child, _), (parent, links) in db.links.items():
        if parent != e:
            continue
        links, times = links.numpy(), db.times[child]
        if times is None:
            parts.append(np.bincount(links[links >= 0], minlength=db.num_rows[e])[entity, None].astype(np.float64))
            categorical.append(np.zeros(1, dtype=bool))
            continue
        times = times.numpy()
        linked = links >= 0
        if not linked.any():  # a key that links nothing: nothing to count
            parts.append(np.tile([0.0, 0.0, np.nan], (len(entity), 1)))
            categorical.append(np.zeros(3, dtype=bool))
            continue
        # One sorted key per linked row, (entity, time): each example's counts are two binary searches.
        order = np.lexsort((times[linked], links[linked]))
        rows, stamps = links[linked][order], times[linked][order]
        start = np.searchsorted(rows, entity, side="left")
        upto = _search_within(rows, stamps, entity, cutoff)
        recent = _search_within(rows, stamps, entity, cutoff - task.window)
        last = np.where(upto > start, cutoff - stamps[np.maximum(upto - 1, 0)], np.nan)
        parts.append(np.stack([upto - start, upto - recent, last], axis=1).astype(np.float64))
        categorical.append(np.zeros(3, dtype=bool))
    if not parts:
        raise RelsslError(f"--task {task.name}: '{task.entity}' has no features and no table links to it")
    return np.concatenate(parts, axis=1), np.concatenate(categorical)


def _search_within(rows: np.ndarray, stamps: np.ndarray, entity: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Per query, the position after the last (row, stamp) <= (entity, time) in rows sorted by
    (row, stamp): one searchsorted over both keys packed into an int64 (row * span + stamp)."""
    base = min(int(stamps.min()), int(time.min()))
    span = max(int(stamps.max()), int(time.max())) - base + 1
    if (int(rows.max()) + 1) * span >= 2 ** 62:
        raise RelsslError(f"cut-off features: {int(rows.max()) + 1:,} entities over {span:,} seconds do not pack "
                          f"into one int64 key")
    return np.searchsorted(rows * span + (stamps - base), entity * span + (time - base), side="right")


# --trees tuned: LightGBM's defaults (31 leaves, 20 rows a leaf, 100 rounds at rate 0.1) suit
# thousands of labelled rows, not a hundred. The grid spans small to large trees and leaf sizes;
# the rounds stop early on the validation loss, and the grid point with the best validation
# selection score (PR-AUC, macro-F1 or RMSE: what the neural methods early-stop on) is kept.
TREE_GRID = [dict(num_leaves=leaves, min_child_samples=rows) for leaves in (4, 16, 64) for rows in (2, 8, 32)]
TUNED_ROUNDS, TUNED_RATE, TUNED_PATIENCE = 2000, 0.05, 100


def gbdt_scores(x_train: np.ndarray, y_train: np.ndarray, categorical: np.ndarray, kind: str,
                seed: int, *x_eval: np.ndarray, tune: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]:
    """Fit LightGBM on the labelled training rows (classes balanced by weight); score each of
    ``x_eval`` (positive-class probability, [n, classes] probabilities, or the predicted value).
    ``tune`` = (validation rows, their labels): the best of TREE_GRID on them instead of the defaults."""
    # One thread: on a shared 2-core machine parallel regions cost more in barrier waits than they
    # save (a 468-row fit took a minute with two threads under load); row-wise histograms keep a
    # deterministic fit reproducible.
    params = dict(random_state=seed, n_jobs=1, deterministic=True, force_row_wise=True, verbose=-1)
    columns = [int(i) for i in np.flatnonzero(categorical)] or "auto"
    model_class = LGBMRegressor if kind == "regression" else partial(LGBMClassifier, class_weight="balanced")
    if tune is None:
        model = model_class(**params).fit(x_train, y_train, categorical_feature=columns)
    else:
        x_val, y_val = tune
        x_stop, y_stop, weight = x_val, y_val, {}
        if kind != "regression":
            # LightGBM reads eval_y as its own class indices (it re-encodes only the training labels):
            # map them, leaving out classes training lacks; weigh them balanced, as training is
            classes = np.unique(y_train)
            known = np.isin(y_val, classes)
            x_stop, y_stop, weight = x_val[known], np.searchsorted(classes, y_val[known]), {"eval_class_weight": ["balanced"]}
        best = -math.inf
        for grid in TREE_GRID:
            fitted = model_class(**params, **grid, n_estimators=TUNED_ROUNDS, learning_rate=TUNED_RATE).fit(
                x_train, y_train, categorical_feature=columns, eval_X=(x_stop,), eval_y=(y_stop,), **weight,
                callbacks=[early_stopping(TUNED_PATIENCE, verbose=False)])
            score = selection_score(kind, _predict(fitted, kind, x_val), y_val)
            if score > best or best == -math.inf:  # NaN (no validation positive): the first grid point
                best, model = score, fitted
    return [_predict(model, kind, x) for x in x_eval]


def _predict(model, kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "regression":
        return model.predict(x)
    if kind == "binary":
        return model.predict_proba(x)[:, 1]
    out = np.zeros((len(x), int(model.classes_.max()) + 1))  # column c: class c (a class absent from training: 0)
    out[:, model.classes_.astype(int)] = model.predict_proba(x)
    return out
