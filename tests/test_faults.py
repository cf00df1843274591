"""The permanent fault and bad-input suite (tests/faults.py): every case ends as it should, a clear
one-line error or a correct result, never a traceback, a silent wrong result or lost data; and
random damage to an input file or a schema never gets past the readers as a traceback."""
from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relssl.data.datasets import load_dataset
from relssl.errors import RelsslError
from tests.faults import CASES, classify, cli, good_csv

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return good_csv(tmp_path_factory.mktemp("good"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_fault_case(case, csv, tmp_path):
    outcome = classify(case, tmp_path, csv)
    assert outcome.kind == case.expect, outcome.detail


def test_the_suite_covers_every_area():
    areas = {case.area for case in CASES}
    assert areas == {"readers", "schemas", "options", "splits", "caches", "run folders", "resources"}
    assert len({case.name for case in CASES}) == len(CASES) >= 60


FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FAST
@given(row=st.integers(1, 60), column=st.integers(0, 10),
       value=st.text(alphabet=string.printable.replace(",", "").replace("\n", ""), max_size=12))
def test_any_damaged_cell_of_an_aml_file_is_read_or_named(csv, tmp_path, row, column, value):
    lines = csv.read_text().splitlines()[:61]
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    path = tmp_path / "Fuzz_Trans.csv"
    path.write_text("\n".join(lines) + "\n")
    try:
        data = load_dataset(str(path))
    except RelsslError as err:
        assert "Fuzz_Trans.csv" in str(err) and "\n" not in str(err)
    else:  # read: every amount usable, every label 0 or 1
        assert data.events[["Amount Received", "Amount Paid"]].notna().all().all()
        assert set(data.events["Is Laundering"].unique()) <= {0, 1}


@FAST
@given(text=st.text(max_size=200))
def test_any_schema_text_is_checked_or_named_in_one_line(tmp_path, text):
    (tmp_path / "s.yaml").write_text(text)
    code, err = cli("schema", "check", tmp_path / "s.yaml")
    assert code == 2 and err.count("\n") == 1 and err.startswith("relssl: error: ") and "Traceback" not in err


def test_a_full_disk_under_torch_save_is_enospc(tmp_path):
    import errno
    import os

    from relssl.train.run_folder import save_torch

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with pytest.raises(OSError) as caught:
        save_torch({"w": __import__("torch").zeros(1000)}, "/dev/full")
    assert caught.value.errno == errno.ENOSPC


def test_data_digests_cover_folders_vector_files_and_twins(tmp_path):
    import numpy as np

    from relssl.data.cache import data_digests
    from relssl.errors import RelsslError
    from relssl.train.run_folder import RunFolder

    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "train.json").write_text("{}")
    (tmp_path / "rec" / "image_feat.npy").write_bytes(b"x")
    assert len(data_digests(str(tmp_path / "rec"), tmp_path / "memo")) == 2  # a recommendation folder
    (tmp_path / "e.csv").write_text("t,k\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    np.save(tmp_path / "v.npy", np.ones((3, 2), dtype=np.float32))
    (tmp_path / "keys.txt").write_text("0\n1\n2\n")
    (tmp_path / "s.yaml").write_text("events: {path: e.csv, time: {column: t, unit: s}, columns: {v: {stype: "
                                     "embedding, path: v.npy, keys: keys.txt, key: k}}}\n")
    names = sorted(p.rsplit("/", 1)[1] for p in data_digests(str(tmp_path / "s.yaml"), tmp_path / "memo"))
    assert names == ["e.csv", "keys.txt", "s.yaml", "v.npy"]
    # two files with one content, and a damaged data.json
    run = RunFolder(tmp_path / "run")
    twins = {"/a/x.csv": "d1", "/a/y.csv": "d1"}
    run.check_data(twins, resume=False)
    run.start({})
    run.check_data(dict(twins), resume=True)
    with pytest.raises(RelsslError, match="the data changed since the run started \\(a file it read is gone\\)"):
        run.check_data({"/a/x.csv": "d1"}, resume=True)
    (tmp_path / "run" / "data.json").write_text("{")
    with pytest.raises(RelsslError, match="data.json: damaged"):
        run.check_data(twins, resume=True)
    run.unlock()
