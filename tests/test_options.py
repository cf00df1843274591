"""Config values are coerced to their field's type, or refused in one line."""
import pytest

from relssl.cli import main
from relssl.errors import RelsslError
from relssl.eval.finetune import FinetuneConfig
from relssl.options import coerce
from relssl.train.pretrain import PretrainConfig


def test_yaml_strings_become_the_fields_types():
    # PyYAML reads 1e-3 (no dot) as a string; quoted numbers are strings too.
    cfg = PretrainConfig.from_dict({"lr": "1e-3", "epochs": "2", "train_rows_per_epoch": None, "split": 70,
                                    "weights": [1, "2.5"], "model": {"fanouts": "8,4", "channels": 16.0}})
    assert (cfg.lr, cfg.epochs, cfg.train_rows_per_epoch, cfg.split) == (0.001, 2, None, "70")
    assert cfg.weights == [1.0, 2.5] and cfg.model.fanouts == [8, 4] and cfg.model.channels == 16
    tuned = FinetuneConfig.from_dict({"label_fraction": "0.1", "train": {"epochs": "3"}})
    assert tuned.label_fraction == 0.1 and tuned.train.epochs == 3


@pytest.mark.parametrize("raw,message", [
    ({"epochs": "ten"}, "config: epochs: expected an integer, got 'ten'"),
    ({"epochs": 2.5}, "config: epochs: expected an integer, got 2.5"),
    ({"lr": True}, "config: lr: expected a number, got True"),
    ({"time_aware": "maybe"}, "config: time_aware: expected true or false, got 'maybe'"),
    ({"epochs": None}, "config: epochs: expected an integer, got nothing"),
    ({"model": {"fanouts": "a,b"}}, "config: model: fanouts: expected a list of integers, got 'a,b'"),
    ({"model": 3}, "config: model: expected a mapping of option to value, got 3"),
    ({"objective_options": [1]}, "config: objective_options: expected a mapping, got [1]"),
])
def test_values_that_do_not_fit_are_one_line(raw, message):
    with pytest.raises(RelsslError) as err:
        PretrainConfig.from_dict(raw)
    assert str(err.value) == message


def test_unions_take_the_first_type_that_fits():
    assert coerce("3", int | None, "x") == 3 and coerce(None, int | None, "x") is None
    assert coerce({"a": 1}, str | dict | None, "x") == {"a": 1} and coerce(5, str | dict | None, "x") == "5"


@pytest.mark.slow
def test_a_config_file_with_yaml_strings_trains(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lr: 1e-3\nepochs: '1'\ntrain_rows_per_epoch: 300\neval_rows: 200\n"
                                     "model: {channels: 16, heads: 2, row_layers: 1, fanouts: '4,2'}\n")
    assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    (tmp_path / "bad.yaml").write_text("epochs: ten\n")
    assert main(["pretrain", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "config: epochs: expected an integer, got 'ten'" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,needle", [
    (["pretrain", "--epochs", "ten"], "relssl pretrain: error: argument --epochs: invalid int value: 'ten'"),
    (["finetune", "--trees", "many"], "relssl finetune: error: argument --trees: invalid choice: 'many'"),
    (["pretrian"], "relssl: error: argument command: invalid choice: 'pretrian'"),
    (["pretrain", "--out", "r", "--bogus", "3"], "relssl pretrain: error: unrecognized arguments: --bogus 3 "
                                                 "(options: relssl pretrain --help)"),
    (["experiment", "masks", "--out", "x", "--bogus"],
     "relssl experiment masks: error: unrecognized arguments: --bogus"),
    (["--bogus", "pretrain"], "relssl: error: unrecognized arguments: --bogus"),
])
def test_a_flag_argparse_refuses_is_one_line_too(argv, needle, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith(needle) and err.count("\n") == 1, err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_or_after_the_subcommand(where, tmp_path, capsys):
    argv = ["pretrain", "--data", str(tmp_path / "none_Trans.csv"), "--out", str(tmp_path / "r")]
    assert main(argv) == 2 and "none_Trans.csv: file not found" in capsys.readouterr().err
    with pytest.raises(RelsslError, match="none_Trans.csv: file not found"):
        main(["--debug", *argv] if where == "before" else [*argv, "--debug"])


def test_version(capsys):
    import relssl

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith(f"relssl {relssl.__version__} (torch ")


@pytest.mark.parametrize("flags,needle", [
    (["--train-rows-per-epoch", "-1000"], "--train-rows-per-epoch -1000: expected a positive integer"),
    (["--max-categories", "0"], "--max-categories 0: expected a positive integer"),
    (["--lr", "0"], "--lr 0.0: expected a positive learning rate"),
    (["--eval-rows", "0"], "--eval-rows 0: expected a positive integer"),
    (["--mask-prob", "1.5"], "--mask-prob 1.5: expected a probability in (0, 1]"),
    (["--dropout", "1"], "--dropout 1.0: expected a rate in [0, 1)"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1: expected a number >= 0"),
    (["--seed", "-3"], "--seed -3: expected an integer >= 0"),
    (["--channels", "0"], "--channels 0: expected a positive integer"),
    (["--lr-schedule", "step"], "--lr-schedule step: expected one of constant, cosine"),
    (["--warmup-epochs", "4", "--epochs", "3"], "--warmup-epochs 4.0: expected a number of epochs from 0 to --epochs (3)"),
    (["--warmup-epochs", "nan"], "--warmup-epochs nan: expected a number of epochs from 0 to --epochs (10)"),
])
def test_out_of_range_options_are_one_line(tmp_path, capsys, flags, needle):
    assert main(["pretrain", *flags, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text,needle", [
    ("epochs: 2\nlr: 0.01\nepochs: 3\n", "malformed YAML: line 3: key 'epochs' appears twice"),
    ("a: &x [1, 2]\nb: *x\n", "malformed YAML: line 2: aliases (*name) are not read"),
    ("lol: &a [1, 1, 1]\nlol2: &b [*a, *a, *a]\nlol3: [*b, *b, *b]\n", "malformed YAML: line 2: aliases (*name) are not read"),
])
def test_yaml_with_duplicate_keys_or_aliases_is_one_line(tmp_path, capsys, text, needle):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"--config {tmp_path / 'c.yaml'}: {needle}" in err and err.count("\n") == 1, err
    (tmp_path / "s.yaml").write_text("tables:\n  t: {path: t.csv}\n  t: {path: u.csv}\n")
    assert main(["schema", "check", str(tmp_path / "s.yaml")]) == 2
    assert "key 't' appears twice" in capsys.readouterr().err


def test_a_run_folders_config_reads_back_strictly(tmp_path):
    from relssl.files import dump_yaml, read_yaml

    shared = [8, 4]
    (tmp_path / "c.yaml").write_text(dump_yaml({"a": shared, "b": shared}))  # one list twice: no alias written
    assert read_yaml(tmp_path / "c.yaml") == {"a": [8, 4], "b": [8, 4]}


@pytest.mark.parametrize("times,needle", [
    ([0] * 50, "the validation and test split(s) hold no row; its 50 rows have 1 distinct time(s)"),
    ([0] * 25 + [1] * 25, "split(s) hold no row; its 50 rows have 2 distinct time(s)"),
])
def test_splits_without_rows_are_refused(tmp_path, capsys, times, needle):
    import pandas as pd

    pd.DataFrame({"x": range(50), "t": times}).to_csv(tmp_path / "e.csv", index=False)
    (tmp_path / "s.yaml").write_text("events: {path: e.csv, time: {column: t, unit: s}, columns: {x: numerical}}\n")
    assert main(["pretrain", "--data", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_an_infinite_number_in_a_schema_table_is_one_line(tmp_path, capsys):
    import pandas as pd

    pd.DataFrame({"x": [1.0, float("inf"), 2.0] * 20, "t": range(60)}).to_csv(tmp_path / "e.csv", index=False)
    (tmp_path / "s.yaml").write_text("events: {path: e.csv, time: {column: t, unit: s}, columns: {x: numerical}}\n")
    assert main(["pretrain", "--data", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "numerical column 'x' holds inf in row 1: not a finite number" in err and err.count("\n") == 1, err


def test_bad_numbers_in_a_schema_table_error_drop_or_read_as_missing(tmp_path, capsys):

    import numpy as np

    from relssl.data.datasets import load_dataset

    rows = ["t,x,y,k"] + [f"{i},{i / 10},{i % 7},{i % 3}" for i in range(60)]
    rows[5], rows[9], rows[20] = "4,heavy,1,1", "8,1e39,2,2", "19,0.5,-inf,1"  # text; beyond float32; -inf
    (tmp_path / "e.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "s.yaml").write_text("events: {path: e.csv, time: {column: t, unit: s}, columns: {x: numerical,\n"
                                     "         y: {stype: numerical, transform: log1p}, k: categorical}}\n")
    spec = str(tmp_path / "s.yaml")
    with pytest.raises(RelsslError, match=r"e.csv: numerical column 'x' holds 'heavy' in row 4: not a number"):
        load_dataset(spec)
    with pytest.warns(UserWarning) as caught:
        dropped = load_dataset(spec, on_bad_values="drop")
    assert ["2 bad value(s) (first 'heavy' in row 4) dropped" in str(w.message) for w in caught] == [True, False]
    assert "column 'y': 1 bad value(s) (first -inf in row 19)" in str(caught[1].message)
    assert len(dropped.events) == 57 and list(dropped.time[3:6]) == [3, 5, 6]  # rows 4, 8 and 19 gone
    with pytest.warns(UserWarning, match="read as missing"):
        missing = load_dataset(spec, on_bad_values="missing")
    assert len(missing.events) == 60 and np.isnan(missing.events["x"].to_numpy()).nonzero()[0].tolist() == [4, 8]
    assert np.isnan(missing.events["y"].to_numpy()).nonzero()[0].tolist() == [19]
    # on the command line: the default names the cell; drop trains; an unknown policy names the option
    out = str(tmp_path / "r")
    assert main(["pretrain", "--data", spec, "--out", out, "--no-progress", "--epochs", "1"]) == 2
    assert "holds 'heavy' in row 4" in capsys.readouterr().err
    assert main(["pretrain", "--data", spec, "--out", out, "--no-progress", "--on-bad-values", "skip"]) == 2
    assert capsys.readouterr().err == ("relssl: error: --on-bad-values skip: expected one of error, drop, "
                                       "missing\n")
    with pytest.warns(UserWarning, match="dropped"):
        assert main(["pretrain", "--data", spec, "--out", out, "--no-progress", "--epochs", "1", "--batch-size",
                     "16", "--on-bad-values", "drop"]) == 0
