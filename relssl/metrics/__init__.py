"""Pure metric functions used by every layer: ranking (link prediction, Feat2Vec, recommendation),
classification and regression (downstream), and the names of self-supervised metrics' trivial
references."""
from __future__ import annotations


def reference_key(metric: str) -> str:
    """The key of a self-supervised metric's trivial reference: ``mcm/acc`` -> ``mcm/acc_ref``,
    ``mcm/rmse/Amount`` -> ``mcm/rmse_ref/Amount``, ``lp/hits@1`` -> ``lp/hits@1_ref``."""
    parts = metric.split("/")
    parts[min(1, len(parts) - 1)] += "_ref"
    return "/".join(parts)
