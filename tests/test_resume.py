"""The one fit loop (relssl.train.loop) under every trained command: a run killed mid-way and
resumed with --resume ends exactly as an uninterrupted run, and a run folder's files are written
atomically."""
from __future__ import annotations

import json

import pytest

from relssl.cli import main
from tests.conftest import TINY
from relssl.errors import RelsslError
from relssl.recsys.data import write_lattice
from relssl.recsys.synthetic import make_synthetic
from relssl.train import loop
from relssl.files import atomic_write, write_text
from relssl.train.run_folder import RunFolder
from relssl.version import source_digest

pytestmark = pytest.mark.usefixtures("one_thread")

TIMING = {"seconds", "rows_per_s", "peak_rss_mib"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny AML data with laundering to score, a one-epoch pretrain run on it, tiny recsys data."""
    out = tmp_path_factory.mktemp("resume")
    assert main(["generate", "aml", "--rows", "3000", "--seed", "1", "--laundering-rate", "0.05",
                 "--out", str(out)]) == 0
    csv = str(out / "Synthetic_Trans.csv")
    assert main(["pretrain", "--data", csv, "--epochs", "1", "--out", str(out / "pre"), *TINY]) == 0
    return {"csv": csv, "pre": str(out / "pre"),
            "rec": str(write_lattice(make_synthetic(n_users=60, n_items=40), out / "rec"))}


COMMANDS = {
    # cosine: the resumed run's learning rates continue the schedule (a function of the step alone)
    "pretrain": lambda d: ["pretrain", "--data", d["csv"], "--objectives", "mcm,lp", "--lr-schedule", "cosine",
                           "--warmup-epochs", "0.5", *TINY],
    "feat2vec": lambda d: ["feat2vec", "--data", d["csv"], "--eval-groups", "To Bank", "--batch-size", "256",
                           "--train-rows-per-epoch", "600", "--eval-rows", "300", "--no-progress"],
    "finetune": lambda d: ["finetune", "--data", d["csv"], "--init", d["pre"], "--lr-schedule", "cosine", *TINY],
    "recsys": lambda d: ["recsys", "train", "--data", d["rec"], "--batch-size", "32", "--no-progress"],
}


def strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(data, tmp_path, monkeypatch, command, capsys):
    args = COMMANDS[command](data)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*args, "--epochs", "3", "--out", str(full)]) == 0
    save_checkpoint = RunFolder.save_checkpoint

    def die_in_epoch_2(self, checkpoint):  # epoch 2's history is on disk, its checkpoint never lands
        if checkpoint["epoch"] == 2:
            raise Killed
        save_checkpoint(self, checkpoint)

    monkeypatch.setattr(RunFolder, "save_checkpoint", die_in_epoch_2)
    with pytest.raises(Killed):
        main([*args, "--epochs", "3", "--out", str(cut)])
    monkeypatch.undo()
    assert not (cut / "final.json").exists()
    capsys.readouterr()
    assert main([*args, "--epochs", "3", "--out", str(cut)]) == 2  # never trains over a run
    assert "a run already exists there; pass --resume to continue it" in capsys.readouterr().err
    assert main([*COMMANDS[command](data)[:2 if command == "recsys" else 1], "--out", str(cut), "--resume",
                 "--no-progress"]) == 0
    assert strip(RunFolder(cut).history()) == strip(RunFolder(full).history())
    assert [r["epoch"] for r in RunFolder(cut).history() if r["split"] == "train"] == [1, 2, 3]
    assert strip([RunFolder(cut).final()]) == strip([RunFolder(full).final()])


def test_resume_needs_a_run(tmp_path, capsys):
    assert main(["feat2vec", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "final.json"
    write_text(path, json.dumps({"a": 1}))

    def fail(tmp):
        tmp.write_text('{"a": ')
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, fail)  # every file of a run folder is written through atomic_write
    assert json.loads(path.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [path]


class NeverFinite:
    """A trainer whose validation metric is NaN: no epoch is ever best."""

    device = "cpu"

    def train_epoch(self, epoch, progress):
        return {"loss": 1.0, "seconds": 0.1}

    def validate(self):
        return {"loss": float("nan")}

    def weights(self):
        raise AssertionError("never saved")

    def state(self):
        return {}

    def load_state(self, state):
        pass


def test_a_never_finite_validation_metric_is_one_clear_error(tmp_path):
    with pytest.raises(RelsslError, match="validation loss was never a finite number"):
        loop.fit(NeverFinite(), RunFolder(tmp_path), epochs=3, patience=2, metric="loss", log=lambda _: None)
    assert [r["epoch"] for r in RunFolder(tmp_path).history() if r["split"] == "train"] == [1, 2]


@pytest.mark.slow
def test_a_run_folder_has_one_writer(tmp_path, capsys):
    import os

    from relssl.cli import main
    from tests.conftest import TINY

    out = tmp_path / "r"
    out.mkdir()
    (out / "run.lock").write_text(f"{os.getppid()}\n")  # a live process, not this one
    assert main(["pretrain", "--epochs", "1", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"another process (pid {os.getppid()}) is writing this run folder" in err and err.count("\n") == 1
    (out / "run.lock").write_text("999999999\n")  # its process is gone: a stale lock
    assert main(["pretrain", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert not (out / "run.lock").exists() and (out / "final.json").exists()


@pytest.mark.slow
def test_resume_refuses_flags_that_would_change_the_run(tmp_path, capsys):
    from relssl.cli import main
    from tests.conftest import TINY

    out = str(tmp_path / "r")
    assert main(["pretrain", "--epochs", "1", "--patience", "5", "--out", out, *TINY]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--out", out, "--resume", "--lr", "0.5", "--objectives", "lp", "--channels", "32"]) == 2
    err = capsys.readouterr().err
    assert ("the run was trained with other settings: --objectives ['lp'] (the run has ['mcm']); --lr 0.5 (the run "
            "has 0.001); --channels 32 (the run has 16)") in err and err.count("\n") == 1, err
    assert main(["pretrain", "--out", out, "--resume", "--epochs", "2", "--lr", "0.001", "--no-progress"]) == 0
    # objective and combiner options too: a run without the task or combiner, or with another value
    assert main(["pretrain", "--out", out, "--resume", "--lp-negatives", "4", "--moco-beta", "0.5"]) == 2
    err = capsys.readouterr().err
    assert ("other settings: --moco-beta 0.5 (the run's combiner is sum); --lp-negatives 4 (the run has no lp)"
            in err and err.count("\n") == 1), err
    out = str(tmp_path / "lp")
    assert main(["pretrain", "--objectives", "mcm,lp", "--combiner", "moco", "--lp-negatives", "4", "--epochs", "1",
                 "--patience", "5", "--out", out, *TINY]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--out", out, "--resume", "--lp-negatives", "8", "--moco-beta", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "other settings: --moco-beta 0.5 (the run has 0.999); --lp-negatives 8 (the run has 4)" in err, err
    # the values it has, given or left to their defaults, are no change
    assert main(["pretrain", "--out", out, "--resume", "--epochs", "2", "--lp-negatives", "4", "--moco-beta",
                 "0.999", "--no-progress"]) == 0


def test_resume_takes_more_epochs_and_another_device_or_log_from_cli_and_python(data, tmp_path, capsys):
    import yaml

    import relssl

    out = tmp_path / "r"
    assert main(["pretrain", "--data", data["csv"], "--epochs", "1", "--patience", "5", "--out", str(out), *TINY]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["device"] == "auto"
    assert main(["pretrain", "--out", str(out), "--resume", "--epochs", "2", "--device", "cpu", "--log", "csv",
                 "--no-progress"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["epochs"], saved["device"], saved["log"]) == (2, "cpu", ["csv"])  # taken, not ignored
    assert (out / "steps.csv").exists()
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(epochs) == 2
    # Python: more epochs apply; another setting is refused in one line, as the flag is
    model = relssl.pretrain(out=out, resume=True, epochs=3)
    assert model.config.epochs == 3
    assert max(json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()) == 3
    with pytest.raises(RelsslError, match=r"resume .*: the run was trained with other settings \(lr 0.001 there, "
                                          r"0.5 now; model.channels 16 there, 32 now\)"):
        relssl.pretrain(out=out, resume=True, epochs=4, lr=0.5, channels=32)


def test_resume_refuses_changed_data_naming_the_file(data, tmp_path, capsys):
    csv, out = tmp_path / "aml.csv", str(tmp_path / "r")
    csv.write_text(open(data["csv"]).read())
    assert main(["pretrain", "--data", str(csv), "--epochs", "1", "--patience", "5", "--out", out, *TINY]) == 0
    saved = json.loads((tmp_path / "r" / "data.json").read_text())
    assert saved["code"] == [source_digest()]
    saved = saved["files"]
    assert list(saved) == [str(csv.resolve())] and len(saved[str(csv.resolve())]) == 64
    capsys.readouterr()
    original = csv.read_text()
    csv.write_text(original[:-2] + ("1" if original[-2] != "1" else "0") + "\n")  # same size, one byte differs
    assert main(["pretrain", "--out", out, "--resume", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {out}: the data changed since the run started (aml.csv changed)" in err and err.count("\n") == 1
    csv.write_text(original)  # the data it started on: resumes
    data_json = tmp_path / "r" / "data.json"  # as if other code had trained the first epoch
    data_json.write_text(json.dumps({**json.loads(data_json.read_text()), "code": ["0123456789ab"]}))
    assert main(["pretrain", "--out", out, "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert json.loads(data_json.read_text())["code"] == ["0123456789ab", source_digest()]


@pytest.mark.slow
def test_every_trained_command_refuses_changed_flags_on_resume(tmp_path, capsys):
    from relssl.cli import main
    from tests.conftest import TINY

    from tests.test_new_rows import SCHEMA, labelled

    labelled(600).to_csv(tmp_path / "l.csv", index=False)
    (tmp_path / "l.yaml").write_text(SCHEMA.format(name="l.csv").replace("  source:", "  labels: [y]\n  source:"))
    ft = str(tmp_path / "ft")
    assert main(["finetune", "--data", str(tmp_path / "l.yaml"), "--task", "edge:y", "--epochs", "1", "--patience", "5",
                 "--out", ft, *TINY]) == 0
    capsys.readouterr()
    assert main(["finetune", "--out", ft, "--resume", "--lr", "0.5"]) == 2
    assert "--lr 0.5 (the run has 0.001)" in capsys.readouterr().err
    assert main(["finetune", "--out", ft, "--resume", "--moco-beta", "0.5"]) == 2
    assert "--moco-beta 0.5 (the run's combiner is sum)" in capsys.readouterr().err
    assert main(["finetune", "--out", ft, "--resume", "--epochs", "2", "--no-progress"]) == 0
    f2v = str(tmp_path / "f2v")
    assert main(["feat2vec", "--epochs", "1", "--patience", "5", "--train-rows-per-epoch", "500", "--eval-rows", "300",
                 "--out", f2v, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["feat2vec", "--out", f2v, "--resume", "--negatives", "9"]) == 2
    assert "--negatives 9 (the run has 5)" in capsys.readouterr().err


def per_column_layout(state: dict, prefix: str, numerical: list[int]) -> dict:
    """``state`` as relssl saved it before the numerical cell heads were stacked: one two-layer head
    per numerical column, ``heads.<pos>.*``, among the other columns' heads in column order."""
    parts = {"num_hidden_weight": "0.weight", "num_hidden_bias": "0.bias", "num_out_weight": "2.weight",
             "num_out_bias": "2.bias"}
    stacked = {name: state[prefix + name] for name in parts}
    columns = {f"{prefix}heads.{pos}.{part}": stacked[name][k].reshape(1, -1) if name == "num_out_weight"
               else stacked[name][k].reshape(1) if name == "num_out_bias" else stacked[name][k]
               for k, pos in enumerate(numerical) for name, part in parts.items()}
    heads = {k: v for k, v in state.items() if k.startswith(prefix + "heads.")} | columns
    first = next(i for i, k in enumerate(state) if k.startswith(prefix))
    rest = [(k, v) for k, v in state.items() if not k.startswith(prefix)]
    ordered = sorted(heads, key=lambda k: int(k[len(prefix + "heads."):].split(".")[0]))
    return dict(rest[:first] + [(k, heads[k]) for k in ordered] + rest[first:])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["two numbers", "one number", "a column without moments"])
def test_a_run_saved_with_a_head_per_numerical_column_resumes_and_loads(data, tmp_path, case):
    """Checkpoints and weights written before the numerical cell heads were stacked still load: the
    run resumed from that layout is the run resumed from today's, and embeds the same rows alike.
    With one numerical column the two layouts have as many tensors; a column whose head never took
    a step has no optimizer entry (zeros stand in)."""
    import shutil

    import pandas as pd
    import torch
    from safetensors.torch import load_file, save_file

    from relssl.train.pretrain import PretrainConfig, Pretrainer
    from tests.test_new_rows import ratings, schema

    now, old = tmp_path / "now", tmp_path / "old"
    source = schema(tmp_path, "r.csv", ratings(400)) if case == "one number" else data["csv"]
    assert main(["pretrain", "--data", source, "--objectives", "mcm,dae", "--epochs", "1", "--patience", "5",
                 "--out", str(now), *TINY]) == 0
    shutil.copytree(now, old)
    trainer = Pretrainer(PretrainConfig.from_dict(RunFolder(now).config()), log=None, progress=False)
    numerical = {f"{i}.heads.": obj.heads.numerical for i, obj in enumerate(trainer.objectives)}
    assert all(len(columns) == (1 if case == "one number" else 2) for columns in numerical.values())
    checkpoint = torch.load(old / "checkpoint.pt", weights_only=True)
    state = checkpoint["state"]
    names = [f"objectives.{k}" for k in state["objectives"]]  # every objectives entry is a parameter
    for prefix, columns in numerical.items():
        state["objectives"] = per_column_layout(state["objectives"], prefix, columns)
    # the optimizer's moments: the model's parameters first, then the objectives' in their saved order
    optimizer = state["optimizer"]
    n_model = len(optimizer["param_groups"][0]["params"]) - len(names)
    moments = {name: optimizer["state"][n_model + i] for i, name in enumerate(names) if n_model + i in optimizer["state"]}
    legacy = {i: st for i, st in optimizer["state"].items() if i < n_model}  # a parameter never used has none
    order = [f"objectives.{k}" for k in state["objectives"]]
    for index, name in enumerate(order, start=n_model):
        if name in moments:
            legacy[index] = moments[name]
            continue
        if name in names:  # a parameter that never had a gradient has no moments
            continue
        head, rest = name.split(".heads.heads.")
        pos, part = rest.split(".", 1)
        stacked = moments[f"{head}.heads.num_" + {"0.weight": "hidden_weight", "0.bias": "hidden_bias",
                                                   "2.weight": "out_weight", "2.bias": "out_bias"}[part]]
        k = numerical[head[len("objectives."):] + ".heads."].index(int(pos))
        shape = {"2.weight": (1, -1), "2.bias": (1,)}.get(part, stacked["exp_avg"][k].shape)
        legacy[index] = {"step": stacked["step"], **{m: stacked[m][k].reshape(shape) for m in ("exp_avg", "exp_avg_sq")}}
    # 4 tensors per column, not per stack, in both tasks
    assert len(order) == len(names) + sum(4 * (len(columns) - 1) for columns in numerical.values())
    if case == "a column without moments":
        second = [i for i, name in enumerate(order, start=n_model) if f"heads.heads.{numerical['0.heads.'][1]}." in name]
        for i in second:
            del legacy[i]
    optimizer["state"], optimizer["param_groups"][0]["params"] = legacy, list(range(n_model + len(order)))
    optimizer["param_groups"][0]["fused"] = None  # as saved before the fused kernel
    torch.save(checkpoint, old / "checkpoint.pt")
    for run in (now, old):
        (run / "final.json").unlink()
        assert main(["pretrain", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    if case == "a column without moments":  # resumes; its moments restart from zero, so the run differs
        assert [r["epoch"] for r in RunFolder(old).history() if r["split"] == "train"] == [1, 2]
        return
    assert strip(RunFolder(old).history()) == strip(RunFolder(now).history())
    weights = load_file(now / "model.safetensors")
    for prefix, columns in numerical.items():
        weights = per_column_layout(weights, f"objectives.{prefix}", columns)
    assert f"objectives.0.heads.heads.{numerical['0.heads.'][0]}.0.weight" in weights
    save_file(weights, old / "model.safetensors")
    for run in (now, old):
        assert main(["embed", "--run", str(run), "--out", str(tmp_path / f"{run.name}.parquet")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "old.parquet"), pd.read_parquet(tmp_path / "now.parquet"))


def test_a_checkpoint_saved_before_the_fused_kernel_keeps_it_on():
    import torch

    from relssl.nn.optim import adamw, load_optimizer

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = adamw([weight], lr=1e-3, weight_decay=0.0)
    assert optimizer.param_groups[0]["fused"] is True
    saved = optimizer.state_dict()
    saved["param_groups"][0]["fused"] = None
    load_optimizer(optimizer, saved)
    assert optimizer.param_groups[0]["fused"] is True


def test_only_a_resumed_run_keeps_the_code_digests_of_its_earlier_sessions(tmp_path):
    def start(resume: bool) -> list[str]:
        folder = RunFolder(tmp_path / "r")
        folder.check_data({}, resume=resume)
        folder.start({})
        folder.unlock()
        return json.loads((tmp_path / "r" / "data.json").read_text())["code"]

    assert start(False) == [source_digest()]
    (tmp_path / "r" / "data.json").write_text(json.dumps({"files": {}, "code": ["0123456789ab"]}))
    assert start(True) == ["0123456789ab", source_digest()]
    assert start(True) == ["0123456789ab", source_digest()]  # the same code again: not repeated
    assert start(False) == [source_digest()]  # a new run in a folder a killed one left: its own code only


@pytest.mark.parametrize("damage,needle", [
    (lambda text: "\n".join(text.splitlines()[:3]) + "\n", "config.yaml: empty or damaged (cut short: its last line"),
    (lambda text: "", "config.yaml: empty or damaged (no settings)"),
])
def test_a_config_cut_short_or_empty_is_named_on_resume(data, tmp_path, damage, needle, capsys):
    """Read, the settings a cut config.yaml lacks would be defaults: another model (a traceback from
    the checkpoint's shapes) or other data ("the data changed")."""
    import shutil

    out = tmp_path / "r"
    shutil.copytree(data["pre"], out)
    (out / "config.yaml").write_text(damage((out / "config.yaml").read_text()))
    for argv in (["pretrain", "--out", str(out), "--resume", "--epochs", "2"], ["embed", "--run", str(out), "--out",
                                                                               str(tmp_path / "e.parquet")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"relssl: error: {out / needle}") and err.count("\n") == 1, err


def test_a_checkpoint_that_does_not_fit_the_config_is_named_on_resume(data, tmp_path, capsys):
    """A config.yaml edited, or cut short in a run from before its end line was written: its model
    is not the checkpoint's."""
    import shutil

    out = tmp_path / "r"
    shutil.copytree(data["pre"], out)
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("channels: 16", "channels: 32"))
    assert main(["pretrain", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"relssl: error: {out / 'checkpoint.pt'} does not match {config} (size mismatch for ")
    assert "the run folder is damaged or was edited" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_releases_the_lock_and_resumes(data, tmp_path):
    """A real SIGINT, as Ctrl-C sends it, to a run past its first checkpoint: one line, exit 130,
    run.lock removed at exit, the checkpoint whole, and --resume continues from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "relssl", "pretrain", "--data", data["csv"], "--epochs", "1000",
                             "--patience", "1000", "--out", str(out), *TINY], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.pt").exists():  # in the epoch loop: no race with start-up
            if proc.poll() is not None:
                pytest.fail(f"exit {proc.returncode} before its first checkpoint: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "no checkpoint in 5 minutes"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "relssl: interrupted", err
    assert "Traceback" not in err and not (out / "run.lock").exists() and not (out / "final.json").exists()
    epoch = RunFolder(out).load_checkpoint("cpu")["epoch"]
    assert epoch >= 1
    assert main(["pretrain", "--out", str(out), "--resume", "--epochs", str(epoch + 1), "--no-progress"]) == 0
    assert [r["epoch"] for r in RunFolder(out).history() if r["split"] == "train"] == list(range(1, epoch + 2))
