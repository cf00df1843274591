"""Pure metric functions used by every layer: ranking (link prediction, Feat2Vec, recommendation),
classification and regression (downstream). The names of self-supervised metrics' trivial
references follow the tasks' names: relssl.objectives.reference_key."""
from __future__ import annotations
