"""--jobs' process runner (relssl.experiments.parallel): errors and dead workers stop every run.
The functions below run in spawned processes, which import this module by name."""
import os
import time

import pytest

from relssl.errors import RelsslError
from relssl.experiments.parallel import run_parallel


def sleep_then_touch(path: str, seconds: float) -> None:
    time.sleep(seconds)
    open(path, "w").close()


def exit_abruptly() -> None:
    os._exit(3)  # as a process killed mid-run: no exception, no message


def refuse() -> None:
    raise RelsslError("data.csv: column 'x' missing")


@pytest.mark.slow
def test_a_worker_that_dies_or_fails_stops_every_run_and_is_reported(tmp_path):
    done = tmp_path / "done"
    start = time.monotonic()
    with pytest.raises(RelsslError, match=r"^\[b\] its process died \(exit code 3\); the run resumes"):
        run_parallel(2, [("a", sleep_then_touch, (str(done), 60)), ("b", exit_abruptly, ())])
    assert time.monotonic() - start < 50 and not done.exists()  # the sleeper was stopped, not waited for
    with pytest.raises(RelsslError, match=r"^data.csv: column 'x' missing$"):
        run_parallel(2, [("a", sleep_then_touch, (str(done), 60)), ("b", refuse, ())])
    run_parallel(2, [("a", sleep_then_touch, (str(done), 0)), ("b", sleep_then_touch, (str(tmp_path / "2"), 0)),
                     ("c", sleep_then_touch, (str(tmp_path / "3"), 0))])
    assert done.exists() and (tmp_path / "2").exists() and (tmp_path / "3").exists()
