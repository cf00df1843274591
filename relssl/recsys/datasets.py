"""The recommendation datasets a --data argument names: built-in ones (the shared Amazon-Baby
features, the generated synthetic set, MovieLens) or any LATTICE/MMSSL folder."""
from __future__ import annotations

from pathlib import Path

from relssl.data.paths import shared_data_dir
from relssl.errors import RelsslError
from relssl.recsys.data import RecData, read_lattice
from relssl.recsys.movielens import load_movielens
from relssl.recsys.synthetic import make_synthetic

SHARED_FOLDERS = {"amazon_baby": "amazon_baby_mmssl"}  # built-in name -> folder of the shared data
BUILTINS = ("amazon_baby", "synthetic", "movielens")


def shared_folder(name: str) -> Path:
    folder = shared_data_dir() / SHARED_FOLDERS[name]
    if not folder.is_dir():
        raise RelsslError(f"--data {name}: {folder} does not exist; set RELSSL_SHARED_DATA to the folder "
                          f"holding {SHARED_FOLDERS[name]}/")
    return folder


def load_recsys_data(spec: str, interactions: str | None = None, positive: str | None = None) -> RecData:
    """A built-in name (amazon_baby, synthetic, movielens), a LATTICE/MMSSL folder, or with
    ``interactions`` a database's table of interactions (relssl.recsys.tables)."""
    if interactions:
        from relssl.recsys.tables import read_database, recdata_from_table

        return recdata_from_table(read_database(spec), interactions, positive)
    if positive:
        raise RelsslError("--positive picks rows of an --interactions table; give --interactions too")
    if spec == "synthetic":
        return make_synthetic()
    if spec == "movielens":
        return load_movielens()
    if spec in SHARED_FOLDERS:
        return read_lattice(shared_folder(spec), name=spec)
    if Path(spec).is_dir():
        return read_lattice(spec)
    raise RelsslError(f"--data '{spec}': not a built-in dataset ({', '.join(BUILTINS)}) nor a folder "
                      f"with train.json, val.json and test.json")
