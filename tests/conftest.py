"""Shared fixtures: learnable toy relational data and paths to the real third-party data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch_frame

from relssl.data.relational import RelationalData

# A tiny model and budget for end-to-end CLI runs of the backbone commands.
TINY = ["--channels", "16", "--heads", "2", "--row-layers", "1", "--gnn-layers", "1", "--fanouts", "4,2",
        "--batch-size", "128", "--train-rows-per-epoch", "600", "--eval-rows", "300", "--no-progress"]

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("RELSSL_SHARED_DATA", str(SHARED_DATA))
# Two threads in all: under pytest-xdist (`make test` runs one process per core) each process takes its share.
torch.set_num_threads(max(1, min(2, torch.get_num_threads()) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))))


def toy_relational(n: int = 4000, seed: int = 0, graph: bool = True) -> RelationalData:
    """Cells that predict each other: 'b' copies 'a', 'x' is a linear function of 'a' plus small
    noise, 'c' is noise (unpredictable). Events link 200 entities over ten days."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, n)
    events = pd.DataFrame({
        "a": pd.Series(a).map(lambda v: f"a{v}"),
        "b": pd.Series(a).map(lambda v: f"b{v}"),
        "c": pd.Series(rng.integers(0, 4, n)).map(lambda v: f"c{v}"),
        "x": a * 2.0 + rng.normal(0, 0.1, n),
        "y": rng.integers(0, 2, n),
    })
    time = np.sort(rng.integers(1_600_000_000, 1_600_000_000 + 10 * 86400, n))
    stypes = {"a": torch_frame.categorical, "b": torch_frame.categorical, "c": torch_frame.categorical,
              "x": torch_frame.numerical}
    kwargs = {}
    if graph:
        kwargs = dict(src=rng.integers(0, 200, n).astype(np.int64), dst=rng.integers(0, 200, n).astype(np.int64),
                      num_entities=200)
    return RelationalData(name="toy", events=events, col_stypes=stypes, label_cols=["y"], time_col=None,
                          time=time, **kwargs)


@pytest.fixture
def toy():
    return toy_relational()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Runs in tests keep their preprocessed-data cache out of the working tree."""
    os.environ["RELSSL_CACHE"] = str(tmp_path_factory.mktemp("relssl-cache"))


@pytest.fixture
def one_thread():
    """Small-batch tests run faster and steadier on one torch thread (files opt in with pytestmark)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
