"""The fault and bad-input suite: every case runs the CLI in this process on bad input or under an
injected fault (a full disk, a kill mid-write, no memory, a second writer) and is classified.

An outcome is one of: ``clear`` (exit 2, one ``relssl: error:`` line naming what the case damaged,
no traceback), ``ok`` (exit 0 and the case's check of the result holds), ``unclear`` (an error that
is not one line, or does not name it), ``traceback`` (an exception escaped), ``silent`` (exit
0 with a wrong result, or a valid input refused) and ``lost`` (a file that was good
before the fault is gone or unreadable). tests/test_faults.py asserts each case's expected outcome;
``python -m tests.faults docs/reliability.md`` (``make reliability``) writes the counts.
"""
from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import socket
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

import torch

from relssl.cli import main
from relssl.data.aml_generator import write_aml
from tests.conftest import TINY

OUTCOMES = ("clear", "ok", "unclear", "traceback", "silent", "lost")


@dataclass(frozen=True)
class Case:
    name: str
    area: str
    expect: str  # clear or ok
    run: Callable[[Path, Path], str | None]  # (tmp folder, a good AML CSV) -> a problem with the result, or None
    slow: bool = False  # trains more than one short run


@dataclass
class Outcome:
    kind: str
    detail: str = ""


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


def cli(*argv: str) -> tuple[int, str]:
    """Exit code and stderr of ``relssl ARGV``; an escaping exception propagates (a traceback)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse: a badly typed flag (one error line)
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, "".join(f"relssl: warning: {w.message}\n" for w in caught) + err.getvalue()


class Failed(Exception):
    """A case's result, when it is not what the case expects (its message says what happened)."""


def expect_error(argv, needle: str = "") -> None:
    code, err = cli(*argv)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("relssl: warning")]
    if code == 0:
        raise Failed(f"silent: exit 0 ({err.strip()[:200]!r})")
    if "Traceback" in err:
        raise Failed(f"traceback: exit {code}, {err.strip()[-300:]!r}")
    if code != 2 or len(lines) != 1 or "error:" not in lines[0]:
        raise Failed(f"unclear: exit {code}, {err.strip()[:300]!r}")
    if needle not in lines[-1]:
        raise Failed(f"unclear: the error does not say {needle!r}: {lines[-1]!r}")


def expect_ok(argv) -> str:
    code, err = cli(*argv)
    if code != 0:
        raise Failed(f"silent: exit {code}: {err.strip()[:300]!r}")
    return err


# --- helpers writing bad inputs ------------------------------------------------------------------

def aml_lines(csv: Path) -> list[str]:
    return csv.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def edited(tmp: Path, csv: Path, row: int, column: int, value: str, name: str = "Bad_Trans.csv") -> Path:
    lines = aml_lines(csv)
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    return write_lines(tmp / name, lines)


def pretrain(data, out, *extra) -> list[str]:
    return ["pretrain", "--data", data, "--out", out, "--epochs", "1", *TINY, *extra]


def schema(tmp: Path, text: str, csv_text: str | None = None) -> Path:
    if csv_text is not None:
        (tmp / "t.csv").write_text(csv_text)
    (tmp / "s.yaml").write_text(text)
    return tmp / "s.yaml"


EVENTS_CSV = "t,x,k\n" + "".join(f"{i},{i / 7:.3f},{i % 3}\n" for i in range(200))
EVENTS = "events: {path: t.csv, time: {column: t, unit: s}, columns: {x: numerical, k: categorical}}\n"
EDGES = ("events: {path: t.csv, time: {column: t, unit: s}, columns: {x: numerical}, "
         "source: {column: k, entity: nodes}, target: {column: k, entity: nodes}}\n")


# --- the cases -----------------------------------------------------------------------------------

def c(name: str, area: str, expect: str = "clear", slow: bool = False):
    def register(fn):
        CASES.append(Case(name, area, expect, fn, slow))
        return fn
    return register


CASES: list[Case] = []


def reader_case(name: str, make, needle: str = ""):
    @c(name, "readers")
    def _(tmp, csv):
        expect_error(pretrain(make(tmp, csv), tmp / "r"), needle)


reader_case("missing file", lambda t, c: t / "nope.csv", "nope.csv")
reader_case("empty file", lambda t, c: write_lines(t / "E_Trans.csv", []), "E_Trans.csv")
reader_case("header only", lambda t, c: write_lines(t / "H_Trans.csv", aml_lines(c)[:1]), "no transaction rows")
reader_case("wrong header", lambda t, c: write_lines(t / "W_Trans.csv", ["a,b,c"] + aml_lines(c)[1:]), "W_Trans.csv")
reader_case("text in an amount", lambda t, c: edited(t, c, 5, 5, "abc"), "Amount Received")
reader_case("inf amount", lambda t, c: edited(t, c, 5, 7, "inf"), "data row 5")
reader_case("NaN amount", lambda t, c: edited(t, c, 9, 5, "NaN"), "data row 9")
reader_case("overflowing amount", lambda t, c: edited(t, c, 9, 5, "1e999"), "data row 9")
reader_case("bad timestamp", lambda t, c: edited(t, c, 3, 0, "yesterday"), "Timestamp")
reader_case("label 2", lambda t, c: edited(t, c, 3, 10, "2"), "Is Laundering")
reader_case("empty account", lambda t, c: edited(t, c, 3, 2, ""), "empty value")
reader_case("missing field", lambda t, c: write_lines(t / "F_Trans.csv", aml_lines(c)[:4] + ["2022/09/01 00:20,1"]),
            "F_Trans.csv")
reader_case("garbage .gz", lambda t, c: (t / "G_Trans.csv.gz").write_bytes(b"not gzip") and t / "G_Trans.csv.gz",
            "gzip")
reader_case("binary file", lambda t, c: (t / "B_Trans.csv").write_bytes(bytes(range(256)) * 8) and t / "B_Trans.csv",
            "B_Trans.csv")
reader_case("a folder as --data", lambda t, c: t, "")


@c("valid .csv.gz", "readers", "ok")
def _(tmp, csv):
    packed = tmp / "Z_Trans.csv.gz"
    packed.write_bytes(gzip.compress(csv.read_bytes()))
    expect_ok(pretrain(packed, tmp / "r"))


@c("inf amount, --on-bad-values drop", "readers", "ok")
def _(tmp, csv):
    expect_ok(pretrain(edited(tmp, csv, 5, 7, "inf"), tmp / "r", "--on-bad-values", "drop"))
    meta = json.loads(next((tmp / "cache").glob("*/manifest.json")).read_text())
    if "drop" not in json.dumps(meta["inputs"]):
        return "the cache entry does not record that rows were dropped"


@c("NaN amount, --on-bad-values missing", "readers", "ok")
def _(tmp, csv):
    err = expect_ok(pretrain(edited(tmp, csv, 9, 5, "NaN"), tmp / "r", "--on-bad-values", "missing", "--no-cache"))
    final = json.loads((tmp / "r" / "final.json").read_text())
    if "1 row(s) with a bad amount read as missing" not in err or not all(
            v == v for v in final.values() if isinstance(v, float)):
        return "the NaN amount was not read as missing, or a metric is NaN"


def schema_case(name: str, text: str, needle: str = "", csv_text: str | None = EVENTS_CSV):
    @c(name, "schemas")
    def _(tmp, csv):
        expect_error(["schema", "check", schema(tmp, text, csv_text)], needle)


schema_case("malformed YAML", "events: {path: t.csv\n", "malformed YAML")
schema_case("alias bomb", "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "aliases")
schema_case("duplicate key", EVENTS + "events: {}\n", "appears twice")
schema_case("path outside the folder", EVENTS.replace("t.csv", "../../etc/passwd"), "leads out of the schema's folder")
schema_case("unknown top-level key", EVENTS + "tables2: {}\n", "unknown")
schema_case("unknown events key", EVENTS.replace("columns:", "transforms: {x: log1p}, columns:"), "unknown key")
schema_case("text in a numerical column", EVENTS, "'x' holds 'heavy'", EVENTS_CSV.replace("\n5,0.714,", "\n5,heavy,"))
schema_case("inf in a numerical column", EVENTS, "not a finite number", EVENTS_CSV.replace("\n5,0.714,", "\n5,inf,"))
schema_case("missing column", EVENTS.replace("k: categorical", "kk: categorical"), "kk")
schema_case("unknown stype", EVENTS.replace("k: categorical", "k: colour"), "stype 'colour'")
schema_case("unparsable time", EVENTS.replace("unit: s", "format: '%Y'"), "column 't'")
schema_case("not a mapping", "- a\n- b\n", "expected a mapping")
schema_case("typo under events.time", EVENTS.replace("unit: s", "unit: s, fromat: '%Y'"),
            "events.time: unknown key(s) ['fromat']; expected column, format, origin, unit")
schema_case("unknown key under events.source", EDGES.replace("entity: nodes}, target", "entity: nodes, colour: red}, "
                                                             "target"),
            "events.source: unknown key(s) ['colour']; expected column, columns, entity")
schema_case("entities without source and target", EVENTS + "entities: {nodes: {path: t.csv, key: k}}\n",
            "entities: an entity table needs events.source and events.target")
schema_case("an entity given as a file name", EDGES + "entities: {nodes: n.csv}\n",
            "entities.nodes: expected a mapping {path: FILE, key: COLUMN, columns, labels}, got 'n.csv'")
schema_case("unknown transform", EVENTS.replace("x: numerical", "x: {stype: numerical, transform: sqrt}"),
            "column 'x': transform 'sqrt' unknown; expected one of log1p")
schema_case("transform of a categorical column", EVENTS.replace("k: categorical", "k: {stype: categorical, "
                                                                "transform: log1p}"),
            "column 'k': transform 'log1p' applies to numerical columns only, not categorical")
schema_case("distinct with a varying column", "tables: {items: {path: t.csv, primary_key: k, distinct: true, columns: "
                                             "{x: numerical}}}\n", "column 'x' varies within primary key 0; one row")
schema_case("an entity without a path", EDGES + "entities: {nodes: {key: k}}\n", "entities.nodes: missing 'path'")


@c("orphan foreign key", "schemas")
def _(tmp, csv):
    (tmp / "u.csv").write_text("id,age\n0,30\n1,40\n")  # no user 2
    expect_error(["schema", "check", schema(tmp, "tables:\n  users: {path: u.csv, primary_key: id}\n  orders: {path: "
                  "t.csv, foreign_keys: {k: users}, time: {column: t, unit: s}}\n", EVENTS_CSV)], "users")


@c("a schema over 10 MB", "schemas")
def _(tmp, csv):
    (tmp / "big.yaml").write_text("# " + "x" * (11 << 20))
    expect_error(["schema", "check", tmp / "big.yaml"], "at most")


def option_case(name: str, extra: list[str], needle: str):
    @c(name, "options")
    def _(tmp, csv):
        expect_error(pretrain(csv, tmp / "r", *extra), needle)


for flag, value, needle in (
        ("--epochs", "0", "--epochs"), ("--lr", "0", "--lr"), ("--train-rows-per-epoch", "-1000", None),
        ("--max-categories", "0", None), ("--eval-rows", "0", None), ("--mask", "nonsense", None),
        ("--objectives", "foo", "foo"), ("--split", "60/40/0", "test"), ("--split", "60/20", None),
        ("--fanouts", "a,b", None), ("--on-bad-values", "skip", None), ("--weights", "1,2", None),
        ("--config", "nope.yaml", "nope.yaml")):
    option_case(f"{flag} {value}", [flag, value], needle or flag)


@c("--tables naming an unknown table", "options")
def _(tmp, csv):
    (tmp / "k.csv").write_text("k,n\n0,a\n1,b\n2,c\n")
    data = schema(tmp, "tables:\n  kinds: {path: k.csv, primary_key: k, columns: {n: categorical}}\n  items: {path: "
                  "t.csv, time: {column: t, unit: s}, foreign_keys: {k: kinds}, columns: {x: numerical}}\n", EVENTS_CSV)
    expect_error(pretrain(data, tmp / "r", "--tables", "items,nope"), "--tables items,nope: table 'nope': not a table")


for name, argv, needle in (("bench --rows -5", ["--rows", "-5"], "--rows -5"),
                           ("bench --rows abc", ["--rows", "abc"], "--rows abc"),
                           ("bench --steps 0", ["--steps", "0"], "--steps 0")):
    c(name, "options")(lambda tmp, csv, argv=argv, needle=needle: expect_error(["bench", *argv], needle))


@c("every row at one timestamp", "splits")
def _(tmp, csv):
    lines = aml_lines(csv)
    same = [lines[0]] + [",".join(["2022/09/01 00:20", *line.split(",")[1:]]) for line in lines[1:]]
    expect_error(pretrain(write_lines(tmp / "One_Trans.csv", same), tmp / "r"), "split")


@c("a one-row file", "splits")
def _(tmp, csv):
    expect_error(pretrain(write_lines(tmp / "Row_Trans.csv", aml_lines(csv)[:2]), tmp / "r"), "split")


def entry(tmp: Path) -> Path:
    return next(p for p in (tmp / "cache").iterdir() if p.is_dir() and not p.name.startswith("."))


def cache_case(name: str, damage):
    @c(name, "caches", "ok")
    def _(tmp, csv):
        expect_ok(pretrain(csv, tmp / "a"))
        damage(entry(tmp))
        err = expect_ok(pretrain(csv, tmp / "b"))
        if "rebuilding it" not in err:
            return "a damaged entry was used without a warning"
        a, b = (json.loads((tmp / r / "final.json").read_text()) for r in ("a", "b"))
        if {k: v for k, v in a.items() if "seconds" not in k} != {k: v for k, v in b.items() if "seconds" not in k}:
            return "the rebuilt entry trained to another result"


def edit_statistic(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    text = json.dumps(manifest).replace('"MEAN": ', '"MEAN": 1000', 1)
    (path / "manifest.json").write_text(text)


cache_case("edited statistic in the manifest", edit_statistic)
cache_case("missing array", lambda p: next(p.glob("*.npy")).unlink())
cache_case("missing manifest", lambda p: (p / "manifest.json").unlink())
cache_case("truncated array", lambda p: next(p.glob("*.npy")).write_bytes(b"\x93NUMPY"))


def overwrite_index(path: Path) -> None:
    with open(path / "dst.npy", "r+b") as f:  # size kept: an account id far beyond the table
        f.seek(-8, os.SEEK_END)
        f.write((2**60).to_bytes(8, "little"))


cache_case("8 bytes overwritten inside an index array", overwrite_index)


@c("same-size edit, mtime restored", "caches", "ok")
def _(tmp, csv):
    data = tmp / "M_Trans.csv"
    data.write_bytes(csv.read_bytes())
    expect_ok(pretrain(data, tmp / "a"))
    stat = data.stat()
    text = data.read_text()
    data.write_text(text.replace(",0\n", ",1\n", 1))
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    err = expect_ok(pretrain(data, tmp / "b"))
    if "preparing" not in err and len([p for p in (tmp / "cache").iterdir() if p.is_dir()]) < 2:
        return "the edited file was served from the old entry"


def trained(tmp: Path, csv: Path, *extra) -> Path:
    out = tmp / "r"
    expect_ok(pretrain(csv, out, "--patience", "5", *extra))
    return out


@c("resume after a kill inside the checkpoint write", "run folders", "ok", slow=True)
def _(tmp, csv):
    out = trained(tmp, csv)
    good = (out / "checkpoint.pt").read_bytes()
    def torn(obj, f, *a, **k):  # run_folder.save_torch hands torch.save an open file
        f.write(b"half a checkpoint")
        raise Killed

    with mock.patch("torch.save", torn):
        try:
            cli("pretrain", "--out", out, "--resume", "--epochs", "2", "--no-progress")
        except Killed:
            pass
    if (out / "checkpoint.pt").read_bytes() != good:
        return "lost: the last good checkpoint was overwritten"
    if [p.name for p in out.iterdir() if p.name.startswith(".")]:
        return "a temporary file was left in the run folder"
    expect_ok(["pretrain", "--out", out, "--resume", "--epochs", "2", "--no-progress"])


@c("full disk while writing a checkpoint", "run folders", slow=True)
def _(tmp, csv):
    out = trained(tmp, csv)
    good = (out / "checkpoint.pt").read_bytes()

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", f.name)

    with mock.patch("torch.save", full):
        expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2", "--no-progress"], "no space left")
    if (out / "checkpoint.pt").read_bytes() != good:
        raise Failed("lost: the last good checkpoint was overwritten")


@c("too little free disk for a checkpoint", "run folders")
def _(tmp, csv):
    usage = os.statvfs(tmp)
    tiny = mock.Mock(free=1024, total=usage.f_blocks, used=0)
    with mock.patch("shutil.disk_usage", return_value=tiny):
        expect_error(pretrain(csv, tmp / "r", "--no-cache"), "MiB free")


@c("full disk while building a cache entry", "caches")
def _(tmp, csv):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("os.posix_fallocate", full):
        expect_error(pretrain(csv, tmp / "r"), "no space left")
    left = [p.name for p in (tmp / "cache").iterdir() if p.name.startswith(".") and p.is_dir()]
    if left:
        raise Failed(f"silent: a hidden temp folder was left behind: {left}")


@c("a build killed mid-way leaves no hidden folder", "caches", "ok")
def _(tmp, csv):
    (tmp / "cache").mkdir()
    host = socket.gethostname().replace("-", "_")
    dead = tmp / "cache" / f".0123456789abcdef01234567-{host}.999999999-x1y2"
    kept = [tmp / "cache" / name for name in (".backup-2024-05", ".old-99-runs", f".0123456789abcdef01234567-{host}x"
                                              f".999999999-a", ".0123456789abcdef01234567-elsewhere.999999999-b")]
    for folder in (dead, *kept):
        folder.mkdir()
        (folder / "split.npy").write_bytes(b"half")
    expect_ok(pretrain(csv, tmp / "r"))
    if dead.exists():
        return "the killed build's folder is still there"
    if not all(folder.exists() for folder in kept):
        return "lost: the sweep removed a folder that was not a build of this machine"


@c("out of memory in a training step", "resources")
def _(tmp, csv):
    with mock.patch("relssl.train.pretrain.Pretrainer.train_epoch", side_effect=MemoryError()):
        expect_error(pretrain(csv, tmp / "r"), "out of memory")


@c("torch allocation failure", "resources")
def _(tmp, csv):
    failure = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 99999999999 bytes")
    with mock.patch("relssl.train.pretrain.Pretrainer.train_epoch", side_effect=failure):
        expect_error(pretrain(csv, tmp / "r"), "out of memory")


@c("damaged checkpoint.pt on --resume", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    (out / "checkpoint.pt").write_bytes(b"")
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "checkpoint.pt")


@c("pickle payload in checkpoint.pt", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    marker = tmp / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state": Payload()}, out / "checkpoint.pt")
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "checkpoint.pt")
    if marker.exists():
        raise Failed("silent: the payload ran")


@c("torn metrics.jsonl on --resume", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text()[:-20])
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "metrics.jsonl")


@c("malformed config.yaml on --resume", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    (out / "config.yaml").write_text("data: [unclosed\n")
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "config.yaml")


@c("config.yaml cut at a line on --resume", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)  # without its settings: the default model, not TINY's
    (out / "config.yaml").write_text("".join((out / "config.yaml").read_text().splitlines(True)[:3]))
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "config.yaml: empty or damaged")


@c("empty config.yaml on --resume", "run folders")
def _(tmp, csv):
    data = tmp / "E_Trans.csv"  # not the default data
    data.write_bytes(csv.read_bytes())
    out = trained(tmp, data)
    (out / "config.yaml").write_text("")
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "config.yaml: empty or damaged")


@c("checkpoint.pt of another model than config.yaml's", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("channels: 16", "channels: 32"))
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "checkpoint.pt does not match")


@c("damaged model.safetensors for embed", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    (out / "model.safetensors").write_bytes(b"{}")
    expect_error(["embed", "--run", out, "--out", tmp / "e.parquet"], "model.safetensors")


@c("a second writer of one run folder", "run folders")
def _(tmp, csv):
    out = tmp / "r"
    out.mkdir()
    (out / "run.lock").write_text(f"{os.getppid()}\n")  # a live process holds it
    expect_error(pretrain(csv, out), "another process")


@c("a stale lock is taken over", "run folders", "ok")
def _(tmp, csv):
    out = tmp / "r"
    out.mkdir()
    (out / "run.lock").write_text("999999999\n")
    expect_ok(pretrain(csv, out))


@c("a finished run in --out", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    expect_error(pretrain(csv, out), "already exists")


@c("--resume with changed flags", "run folders")
def _(tmp, csv):
    out = trained(tmp, csv)
    expect_error(["pretrain", "--out", out, "--resume", "--lr", "0.5"], "--lr 0.5")


@c("--resume over changed data", "run folders")
def _(tmp, csv):
    data = tmp / "D_Trans.csv"
    data.write_bytes(csv.read_bytes())
    out = trained(tmp, data)
    data.write_text(data.read_text().replace(",0\n", ",1\n", 1))
    expect_error(["pretrain", "--out", out, "--resume", "--epochs", "2"], "the data changed")


# --- running and reporting -----------------------------------------------------------------------

def classify(case: Case, tmp: Path, csv: Path) -> Outcome:
    """Run ``case`` in ``tmp`` (its cache there too) and name what happened."""
    tmp.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("RELSSL_CACHE")
    os.environ["RELSSL_CACHE"] = str(tmp / "cache")
    try:
        problem = case.run(tmp, csv)
    except Failed as failed:
        text = str(failed)
        kind = text.split(":")[0] if text.split(":")[0] in OUTCOMES else "unclear"
        return Outcome(kind, text)
    except BaseException:  # noqa: BLE001 - a traceback is an outcome here
        return Outcome("traceback", traceback.format_exc(limit=-3))
    finally:
        if old is None:
            os.environ.pop("RELSSL_CACHE", None)
        else:
            os.environ["RELSSL_CACHE"] = old
    if problem:
        return Outcome("lost" if problem.startswith("lost") else "silent", problem)
    return Outcome(case.expect)


def good_csv(folder: Path) -> Path:
    trans, _ = write_aml(folder, rows=1500, seed=3, name="Good")
    return trans


def report(outcomes: dict[Case, Outcome]) -> str:
    areas = sorted({case.area for case in outcomes}, key=[c.area for c in CASES].index)
    lines = ["| area | cases | clear errors | handled (ok) | unclear errors | tracebacks | wrong results | data lost |",
             "|---|---|---|---|---|---|---|---|"]
    for area in [*areas, None]:
        chosen = [o.kind for case, o in outcomes.items() if area is None or case.area == area]
        counts = [chosen.count(kind) for kind in OUTCOMES]
        name = "**all**" if area is None else area
        lines.append(f"| {name} | {len(chosen)} | " + " | ".join(map(str, counts)) + " |")
    failures = [f"- {case.area}: {case.name}: {o.kind}: {o.detail.strip().splitlines()[-1][:200]}"
                for case, o in outcomes.items() if o.kind != case.expect]
    return "\n".join(lines) + ("\n\nNot as expected:\n" + "\n".join(failures) if failures else "") + "\n"


if __name__ == "__main__":  # python -m tests.faults [FILE]: run every case, print (or write) the table
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        csv = good_csv(Path(root) / "good")
        outcomes = {case: classify(case, Path(root) / f"case{i}", csv) for i, case in enumerate(CASES)}
    table = report(outcomes)
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        text = path.read_text()
        start, end = "<!-- faults:begin -->\n", "<!-- faults:end -->"
        head, rest = text.split(start)
        path.write_text(head + start + table + rest[rest.index(end):])
    print(table)
