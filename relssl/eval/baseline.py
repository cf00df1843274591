"""The baseline pre-training must beat: gradient-boosted trees (scikit-learn's
HistGradientBoosting) on raw features.

An event's raw features are its own encoded cells (numbers after any declared transform,
category codes, timestamp parts) — the "LightGBM on raw columns" baseline of the AML literature.
An entity's are its feature row plus, over all events (the graph node tasks see), its in- and
out-degree and the mean, max and sum of each numerical event column on each side.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch_frame
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from relssl.data.encoding import EncodedTable
from relssl.data.prepare import PreparedData

MAX_GBDT_CATEGORIES = 255  # HistGradientBoosting's native categorical support stops at max_bins


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


def raw_features(prep: PreparedData, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix over all events (edge tasks) or entities (node tasks), and the categorical mask."""
    return table_matrix(prep.events) if target == "edge" else entity_matrix(prep)


def gbdt_scores(x_train: np.ndarray, y_train: np.ndarray, categorical: np.ndarray, regression: bool,
                seed: int, *x_eval: np.ndarray) -> list[np.ndarray]:
    """Fit on the labelled training rows (classes balanced by weight); score each of ``x_eval``
    (positive-class probability, or the predicted value)."""
    kwargs = dict(categorical_features=categorical if categorical.any() else None, random_state=seed)
    # One OpenMP thread: on a shared 2-core machine the per-node parallel regions cost more in
    # barrier waits than they save (a 468-row fit took a minute with two threads under load).
    with threadpool_limits(1, user_api="openmp"):
        if regression:
            model = HistGradientBoostingRegressor(**kwargs).fit(x_train, y_train)
            return [model.predict(x) for x in x_eval]
        model = HistGradientBoostingClassifier(class_weight="balanced", **kwargs).fit(x_train, y_train)
        return [model.predict_proba(x)[:, 1] for x in x_eval]
