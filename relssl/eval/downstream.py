"""The linear probe: how much of a task is linearly readable from frozen embeddings.

A logistic regression (classes balanced by weight; multinomial for several classes) or a ridge regression on standardised
embeddings, fitted by scikit-learn (deterministic, no learning-rate tuning), then folded into one
``nn.Linear`` on the raw embeddings so that it is saved and applied like any other head.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn


def fit_probe(x: Tensor, y: np.ndarray, kind: str, classes: int | None = None) -> nn.Linear:
    """Head mapping embeddings ``x`` to a logit of the positive class (binary, 0/1 ``y``), to one
    logit per class (multiclass, class indices; ``classes`` of them, also those absent from ``y``)
    or to ``y`` (regression)."""
    x = x.double().numpy()
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    if kind == "regression":
        model = Ridge(alpha=1.0).fit(z, y)
        coef, intercept = model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_)
    else:
        model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(z, y)
        coef, intercept = model.coef_, model.intercept_
        if kind == "multiclass" and len(model.classes_) == 2:  # sklearn gives one row for two classes
            coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        size = max(classes or 0, int(y.max()) + 1)
        if kind == "multiclass" and len(model.classes_) != size:  # a class absent from training
            full = np.zeros((size, coef.shape[1]))
            bias = np.full(size, -1e4)
            full[model.classes_.astype(int)], bias[model.classes_.astype(int)] = coef, intercept
            coef, intercept = full, bias
    head = nn.Linear(x.shape[1], coef.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef / scaler.scale_))
        head.bias.copy_(torch.from_numpy(intercept - (coef * scaler.mean_ / scaler.scale_).sum(1)))
    return head
