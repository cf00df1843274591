"""A small multimodal recommendation set whose item features carry the users' preferences.

Users and items have latent factors; a user picks items by Gumbel-top-k over
``sharpness · <user, item> + log popularity``. Item "image" and "text" features are noisy linear
projections of the item factors, so a model that reads them can place rarely seen items well,
while an ID-only model has to learn each item from its few interactions.
"""
from __future__ import annotations

import numpy as np

from relssl.recsys.data import RecData, split_per_user

CHUNK = 1024  # users scored at once


def make_synthetic(n_users: int = 1000, n_items: int = 1000, factors: int = 8, min_items: int = 5,
                   max_items: int = 15, sharpness: float = 3.0, seed: int = 0) -> RecData:
    """Deterministic per seed: the same arguments give the same interactions, split and features."""
    rng = np.random.default_rng(seed)
    user_f = rng.normal(size=(n_users, factors))
    item_f = rng.normal(size=(n_items, factors))
    log_pop = rng.normal(0.0, 1.0, n_items)  # a long tail of rarely chosen items
    per_user = rng.integers(min_items, max_items + 1, n_users)
    users, items = [], []
    for start in range(0, n_users, CHUNK):
        block = slice(start, min(start + CHUNK, n_users))
        logits = sharpness * user_f[block] @ item_f.T / np.sqrt(factors) + log_pop
        ranked = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)  # sampling without replacement
        keep = np.arange(n_items) < per_user[block, None]
        users.append(np.nonzero(keep)[0] + start)
        items.append(ranked[keep])
    splits = split_per_user(np.concatenate(users), np.concatenate(items), rng)
    features = {
        "image": item_f @ rng.normal(size=(factors, 32)) / np.sqrt(factors) + 0.5 * rng.normal(size=(n_items, 32)),
        "text": item_f @ rng.normal(size=(factors, 16)) / np.sqrt(factors) + 1.0 * rng.normal(size=(n_items, 16)),
    }
    return RecData("synthetic", n_users, n_items, splits, {k: v.astype(np.float32) for k, v in features.items()})
