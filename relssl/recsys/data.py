"""Recommendation data: interactions split into train/val/test, plus optional item features per
modality, and the LATTICE/MMSSL folder format (reader and writer)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from relssl.errors import RelsslError
from relssl.recsys.graph import Csr

SPLITS = ("train", "val", "test")
FEATURE_SUFFIX = "_feat.npy"  # image_feat.npy, text_feat.npy, audio_feat.npy, or any <modality>_feat.npy


@dataclass
class RecData:
    name: str
    n_users: int
    n_items: int
    interactions: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (user ids, item ids), int64
    features: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> n_items x dim, float32

    def counts(self) -> dict[str, int]:
        return {split: len(users) for split, (users, _) in self.interactions.items()}

    def csr(self, *splits: str) -> Csr:
        """The interactions of the given splits, one row per user."""
        users = np.concatenate([self.interactions[s][0] for s in splits])
        items = np.concatenate([self.interactions[s][1] for s in splits])
        return Csr.from_pairs(torch.from_numpy(users), torch.from_numpy(items), self.n_users, self.n_items)

    def select(self, modalities: str) -> "RecData":
        """Keep the named modalities: 'auto' (all the data has), 'none', or a comma-separated list."""
        if modalities == "auto":
            return self
        wanted = [] if modalities == "none" else [m.strip() for m in modalities.split(",") if m.strip()]
        missing = [m for m in wanted if m not in self.features]
        if missing:
            have = ", ".join(self.features) or "none"
            raise RelsslError(f"--modalities {modalities}: {self.name} has no {', '.join(missing)} features "
                              f"(it has: {have})")
        return RecData(self.name, self.n_users, self.n_items, self.interactions,
                       {m: self.features[m] for m in wanted})


def split_per_user(users: np.ndarray, items: np.ndarray, rng: np.random.Generator,
                   val: float = 0.1, test: float = 0.1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random per-user split (as LATTICE/MMSSL): each user with at least 3 interactions keeps
    round(test·n) ≥ 1 for test, round(val·n) ≥ 1 for validation, the rest for training."""
    order = np.lexsort((rng.random(len(users)), users))  # users grouped, random order within a user
    users, items = users[order], items[order]
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(users)) - starts[users]
    n = counts[users]
    n_test = np.where(n >= 3, np.maximum(1, np.round(test * n)), 0)
    n_val = np.where(n >= 3, np.maximum(1, np.round(val * n)), 0)
    split = np.where(rank < n_test, 2, np.where(rank < n_test + n_val, 1, 0))
    return {name: (users[split == k], items[split == k]) for k, name in enumerate(SPLITS)}


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RelsslError(f"{path}: malformed JSON ({err})") from None


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """{"user id": [item ids]} -> (users, items), one entry per interaction."""
    if not path.exists():
        raise RelsslError(f"{path}: file not found; a LATTICE/MMSSL folder holds train.json, val.json "
                          f"and test.json (user id -> list of item ids)")
    raw = read_json(path)
    expected = f"{path}: expected a JSON object mapping user ids to lists of non-negative integer item ids"
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise RelsslError(expected)
    try:
        user_ids = np.array([int(u) for u in raw], dtype=np.int64)
    except ValueError:
        raise RelsslError(f"{expected}; found a user id that is not an integer") from None
    lengths = np.array([len(v) for v in raw.values()], dtype=np.int64)
    items = np.array(list(chain.from_iterable(raw.values())))
    if len(items) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if items.dtype.kind not in "iu" or (user_ids < 0).any() or (items < 0).any():
        raise RelsslError(expected)
    return np.repeat(user_ids, lengths), items.astype(np.int64)


def read_features(path: Path) -> np.ndarray:
    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise RelsslError(f"{path}: not a readable .npy array ({err})") from None
    if feats.ndim != 2:
        raise RelsslError(f"{path}: expected a 2-D array (one row per item), got shape {feats.shape}")
    if not np.issubdtype(feats.dtype, np.number) or not np.isfinite(feats).all():
        raise RelsslError(f"{path}: expected finite numbers")
    return feats.astype(np.float32)


def read_lattice(folder: str | Path, name: str | None = None) -> RecData:
    """A LATTICE/MMSSL folder: {train,val,test}.json, optional <modality>_feat.npy (image, text,
    audio, ...) and item2id.json / user2id.json (used only for the counts of items and users)."""
    folder = Path(folder)
    splits = {s: read_split(folder / f"{s}.json") for s in SPLITS}
    # Drop repeated (user, item) pairs within a split, and a later split's pairs that an earlier one
    # holds: they are excluded from its ranking (relssl.recsys.train), so they could never be hits.
    seen = np.zeros(0, np.int64)
    for s in SPLITS:
        users, items = splits[s]
        keys = np.unique(users * (1 << 32) + items)
        keys = keys[~np.isin(keys, seen)]
        splits[s], seen = (keys >> 32, keys & ((1 << 32) - 1)), np.concatenate([seen, keys])
    max_user = max((u.max() for u, _ in splits.values() if len(u)), default=-1)
    max_item = max((i.max() for _, i in splits.values() if len(i)), default=-1)
    n_users, n_items = max_user + 1, None
    for kind in ("user", "item"):
        path = folder / f"{kind}2id.json"
        if path.exists():
            mapping = read_json(path)
            if not isinstance(mapping, dict):
                raise RelsslError(f"{path}: expected a JSON object mapping raw ids to integer ids")
            if kind == "user":
                n_users = max(n_users, len(mapping))
            else:
                n_items = len(mapping)
    features = {path.name[: -len(FEATURE_SUFFIX)]: read_features(path)
                for path in sorted(folder.glob(f"*{FEATURE_SUFFIX}"))}
    sizes = {len(f) for f in features.values()} | ({n_items} if n_items is not None else set())
    if len(sizes) > 1:
        found = ", ".join(f"{name}{FEATURE_SUFFIX} has {len(f)} rows" for name, f in features.items())
        known = f"item2id.json lists {n_items} items, " if n_items is not None else ""
        raise RelsslError(f"{folder}: feature matrices need one row per item: {known}{found}")
    n_items = sizes.pop() if sizes else max_item + 1
    if max_item >= n_items:
        raise RelsslError(f"{folder}: item id {max_item} is out of range for {n_items} items "
                          f"(item2id.json / feature rows)")
    return RecData(name or folder.name, int(n_users), int(n_items), splits, features)


def write_lattice(data: RecData, folder: str | Path) -> Path:
    """Write ``data`` in the LATTICE/MMSSL format (the reader's inverse)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, (users, items) in data.interactions.items():
        order = np.argsort(users, kind="stable")
        users, items = users[order], items[order]
        ids, starts = np.unique(users, return_index=True)
        lists = np.split(items, starts[1:]) if len(users) else []
        (folder / f"{split}.json").write_text(json.dumps({str(u): x.tolist() for u, x in zip(ids, lists)}))
    for modality, feats in data.features.items():
        np.save(folder / f"{modality}{FEATURE_SUFFIX}", feats)
    return folder
