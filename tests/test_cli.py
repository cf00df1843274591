"""The command line end to end on tiny data, and its errors on bad input."""
import json
import subprocess
import sys

import pytest

from relssl.cli import main
from tests.conftest import TINY



@pytest.fixture(scope="module")
def aml_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("aml")
    assert main(["generate", "aml", "--rows", "4000", "--seed", "1", "--out", str(out)]) == 0
    return out / "Synthetic_Trans.csv"


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "rows_per_s")} for r in records]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_writes_both_files(aml_csv):
    assert aml_csv.exists() and (aml_csv.parent / "Synthetic_Patterns.txt").exists()


@pytest.mark.parametrize("mask", ["replace", "bert", "remove"])
def test_pretrain_writes_a_complete_run_folder(aml_csv, tmp_path, mask, capsys):
    run = tmp_path / "run"
    code = main(["pretrain", "--data", str(aml_csv), "--objectives", "mcm", "--mask", mask, "--epochs", "2",
                 "--seed", "0", "--out", str(run), *TINY])
    assert code == 0
    for name in ("config.yaml", "metrics.jsonl", "final.json", "model.safetensors", "checkpoint.pt", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    records = read_jsonl(run / "metrics.jsonl")
    assert [(r["epoch"], r["split"]) for r in records] == [(1, "train"), (1, "val"), (2, "train"), (2, "val")]
    final = json.loads((run / "final.json").read_text())
    assert {"mcm/acc", "mcm/rmse", "mcm/rmse_raw", "mcm/loss"} <= set(final)
    assert 0 <= final["mcm/acc"] <= 1 and final["mcm/rmse"] > 0
    assert "mcm/acc" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("tasks", [[], ["--objectives", "mcm,mv,lp", "--combiner", "moco"]], ids=["mcm", "moco"])
def test_resume_equals_an_uninterrupted_run(aml_csv, tmp_path, tasks):
    args = ["pretrain", "--data", str(aml_csv), "--seed", "4", *TINY, *tasks]
    assert main([*args, "--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "cut")]) == 0
    assert main(["pretrain", "--out", str(tmp_path / "cut"), "--resume", "--epochs", "2", "--no-progress"]) == 0
    full = strip_timing(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    resumed = strip_timing(read_jsonl(tmp_path / "cut" / "metrics.jsonl"))
    assert resumed == full
    assert json.loads((tmp_path / "cut" / "final.json").read_text()) == json.loads(
        (tmp_path / "full" / "final.json").read_text())


@pytest.mark.parametrize("extra, needle", [
    (["--data", "missing.csv"], "missing.csv"),
    (["--objectives", "mcm,telepathy"], "--objectives"),
    (["--mask", "blur"], "--mask 'blur'"),
    (["--fanouts", "10,x"], "--fanouts"),
    (["--lp-negatives", "8"], "--lp-negatives needs lp"),
    (["--objectives", "mcm,lp", "--lp-negatives", "0"], "lp_negatives 0"),
    (["--objectives", "ctr", "--ctr-prob", "1.5"], "ctr_prob"),
    (["--patience", "0"], "--patience 0"),
])
def test_bad_options_exit_2_with_one_clear_line(aml_csv, tmp_path, capsys, extra, needle):
    args = ["pretrain", "--data", str(aml_csv), "--out", str(tmp_path / "r"), *TINY, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("relssl: error:") and needle in err and "\n" not in err


def test_misspelt_column_and_malformed_config(tmp_path, capsys):
    bad = tmp_path / "Bad_Trans.csv"
    bad.write_text("Timestamp,From Bank,Acount,To Bank,Account,Amount Received,Receiving Currency,Amount Paid,"
                   "Payment Currency,Payment Format,Is Laundering\n2022/09/01 00:20,010,8000EBD30,010,8000EBD30,"
                   "1.0,US Dollar,1.0,US Dollar,Reinvestment,0\n")
    assert main(["pretrain", "--data", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "Acount" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: [1,\n")
    assert main(["pretrain", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "malformed YAML" in capsys.readouterr().err


@pytest.mark.slow
def test_errors_show_no_traceback_unless_debug(tmp_path):
    cmd = [sys.executable, "-m", "relssl", "pretrain", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "none.csv" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "relssl", "--debug", *cmd[3:]], capture_output=True, text=True)
    assert "Traceback" in proc.stderr


def test_the_cli_starts_without_the_libraries_only_training_needs():
    """PyG (it loads torch._dynamo), matplotlib and scipy's optimiser are imported where they are
    used: together they were 2.3 s of the 4 s every command took to start, --help and errors too."""
    code = ("import sys, relssl.cli; print(','.join(m for m in ('torch_geometric', 'torch._dynamo', 'matplotlib', "
            "'scipy.optimize') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_every_flag_of_every_command_has_help():
    import argparse

    from relssl.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and action.help is not argparse.SUPPRESS and not action.help:
                missing.append(f"{path} {action.option_strings[-1]}")

    walk(build_parser(), "relssl")
    assert not missing, missing
