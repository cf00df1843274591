"""Downstream metrics. The decision threshold is a function of validation predictions only, so
test labels can change the test metrics and nothing else."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_recall_curve, roc_auc_score

KINDS = ("binary", "multiclass", "regression")  # what a downstream task predicts


def choose_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The score threshold (predict positive when score >= threshold) maximising the positive
    class's F1 on validation; 0.5 when validation has no positive."""
    if not y.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def classification_metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """F1 of the positive class (the minority class in fraud data) at ``threshold``; PR-AUC (average
    precision) and ROC-AUC."""
    both = 0 < y.sum() < len(y)
    return {"f1": float(f1_score(y, scores >= threshold, zero_division=0)),
            "pr_auc": float(average_precision_score(y, scores)) if both else math.nan,
            "roc_auc": float(roc_auc_score(y, scores)) if both else math.nan}


def regression_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    err = pred - y
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def multiclass_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (each class's F1 weighing alike, over the classes in the labels or the
    predictions: a class absent from both would score 0 and cap the mean) of the most probable class."""
    pred = probs.argmax(1)
    return {"macro_f1": float(f1_score(y, pred, average="macro", labels=np.union1d(y, pred), zero_division=0)),
            "accuracy": float(accuracy_score(y, pred))}


def selection_score(kind: str, scores: np.ndarray, y: np.ndarray) -> float:
    """What early stopping maximises on validation: PR-AUC (threshold-free, positive-class-focused),
    macro-F1, or minus the RMSE."""
    if kind == "regression":
        return -regression_metrics(scores, y)["rmse"]
    if kind == "multiclass":
        return multiclass_metrics(scores, y)["macro_f1"]
    return float(average_precision_score(y, scores)) if y.any() else math.nan


def split_metrics(kind: str, val: tuple[np.ndarray, np.ndarray],
                  test: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """``val``/``test`` = (scores, labels) -> {"threshold" (binary), "val/<m>", "test/<m>"}; the
    threshold comes from validation alone."""
    out = {"threshold": choose_threshold(*val)} if kind == "binary" else {}
    for name, (scores, y) in (("val", val), ("test", test)):
        m = (regression_metrics(scores, y) if kind == "regression" else multiclass_metrics(scores, y)
             if kind == "multiclass" else classification_metrics(scores, y, out["threshold"]))
        out.update({f"{name}/{k}": v for k, v in m.items()})
    return out
