"""A run embeds new rows with its saved preprocessing: its own rows given as a new file embed as
from its data, rows appended later change nothing earlier, and a file of another shape is one line."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from relssl.cli import main
from tests.conftest import TINY

SCHEMA = ("events:\n  path: {name}\n  time: {{column: t, unit: s}}\n  columns: {{x: numerical, c: categorical}}\n"
          "  source: {{column: user, entity: users}}\n  target: {{column: item, entity: items}}\n")


def ratings(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": rng.integers(0, 30, n).astype(str), "item": rng.integers(0, 20, n).astype(str),
                         "x": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], n), "t": start + np.arange(n)})


def schema(folder, name: str, frame: pd.DataFrame) -> str:
    frame.to_csv(folder / name, index=False)
    (folder / f"{name}.yaml").write_text(SCHEMA.format(name=name))
    return str(folder / f"{name}.yaml")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("new_rows")
    data = schema(folder, "a.csv", ratings(400))
    assert main(["pretrain", "--data", data, "--epochs", "1", "--out", str(folder / "run"), *TINY]) == 0
    return folder, data


def events(path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    return table[table["kind"] == "event"].sort_values("id").reset_index(drop=True)


def test_the_runs_rows_as_a_new_file_and_with_later_rows_appended(run):
    folder, data = run
    card = (folder / "run" / "README.md").read_text()
    digest = __import__("hashlib").sha256((folder / "a.csv").read_bytes()).hexdigest()
    assert f"SHA-256 `{digest}`" in card and "| mcm/acc |" in card and "## Intended use" in card
    saved = json.loads((folder / "run" / "preprocessing.json").read_text())
    assert saved["kind"] == "events" and saved["events"]["columns"] == {"x": "numerical", "c": "categorical"}
    assert main(["embed", "--run", str(folder / "run"), "--out", str(folder / "own.parquet")]) == 0
    same = schema(folder, "same.csv", ratings(400))
    more = schema(folder, "more.csv", pd.concat([ratings(400), ratings(150, start=400, seed=1)], ignore_index=True))
    for name, path in (("same", same), ("more", more)):
        assert main(["embed", "--run", str(folder / "run"), "--data", path, "--out", str(folder / f"{name}.parquet")]) == 0
    own, same, more = (events(folder / f"{n}.parquet") for n in ("own", "same", "more"))
    emb = [c for c in own.columns if c.startswith("emb_")]
    assert set(same["split"]) == {"new"} and len(more) == 550
    np.testing.assert_allclose(same[emb].to_numpy(), own[emb].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(more[emb].to_numpy()[:400], own[emb].to_numpy(), atol=1e-5)
    assert own[emb].to_numpy().std(0).min() > 1e-4  # the embeddings vary from row to row


@pytest.mark.parametrize("change,schema_change,needle", [
    (lambda f: f.drop(columns="x"), ("x: numerical, ", ""), "column(s) ['x'] of the trained run are missing"),
    (lambda f: f.assign(c=np.arange(len(f)) % 3), ("c: categorical", "c: numerical"),
     "'c' is numerical, the run's is categorical"),
])
def test_a_new_file_of_another_shape_is_one_line(run, capsys, change, schema_change, needle):
    folder, _ = run
    change(ratings(50)).to_csv(folder / "bad.csv", index=False)
    (folder / "bad.yaml").write_text(SCHEMA.format(name="bad.csv").replace(*schema_change))
    assert main(["embed", "--run", str(folder / "run"), "--data", str(folder / "bad.yaml"),
                 "--out", str(folder / "bad.parquet")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_a_bad_number_in_new_rows_stops_or_reads_as_missing_as_asked(run, capsys):
    folder, _ = run
    frame = ratings(50).astype({"x": object})
    frame.loc[7, "x"] = "n/a?"
    schema(folder, "badx.csv", frame)
    args = ["embed", "--run", str(folder / "run"), "--data", str(folder / "badx.csv.yaml")]
    assert main([*args, "--out", str(folder / "x1.parquet")]) == 2  # the run's policy: error
    err = capsys.readouterr().err
    assert "column 'x'" in err and "--on-bad-values" in err and err.count("\n") == 1, err
    assert main([*args, "--out", str(folder / "x2.parquet"), "--on-bad-values", "missing"]) == 0
    assert main([*args, "--out", str(folder / "x3.parquet"), "--on-bad-values", "drop"]) == 0  # new rows are kept
    kept, also = events(folder / "x2.parquet"), events(folder / "x3.parquet")
    assert len(kept) == 50 and kept.equals(also)
    assert main([*args, "--out", str(folder / "x4.parquet"), "--on-bad-values", "skip"]) == 2
    assert "--on-bad-values skip: expected one of error, drop, missing" in capsys.readouterr().err


def test_predict_on_a_pretrain_run_names_the_folder_and_the_run_it_needs(run, capsys):
    folder, data = run
    assert main(["predict", "--run", str(folder / "run"), "--data", data, "--out", str(folder / "p.parquet")]) == 2
    err = capsys.readouterr().err
    assert (f"--run {folder / 'run'}: a run folder of `relssl pretrain`; expected the --out folder of `relssl "
            f"finetune`") in err and err.count("\n") == 1, err
    import relssl

    assert isinstance(relssl.load(folder / "run"), relssl.Pretrained)


def labelled(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    """x decides the label: a fine-tuned head learns it."""
    frame = ratings(n, start, seed)
    return frame.assign(y=np.where(frame["x"] > 0.3, "fraud", "ok"))


def test_a_fine_tuned_run_predicts_new_rows(tmp_path, capsys):
    labelled(600).to_csv(tmp_path / "l.csv", index=False)
    text = SCHEMA.format(name="l.csv").replace("  source:", "  labels: [y]\n  source:")
    (tmp_path / "l.yaml").write_text(text)
    assert main(["finetune", "--data", str(tmp_path / "l.yaml"), "--task", "edge:y", "--epochs", "15", "--lr", "0.01",
                 "--out", str(tmp_path / "ft"), *TINY]) == 0
    final = json.loads((tmp_path / "ft" / "final.json").read_text())
    assert (final["positive_class"], final["negative_class"]) == ("fraud", "ok")
    later = labelled(300, start=600, seed=2)
    later.to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "new.yaml").write_text(text.replace("l.csv", "new.csv"))
    assert main(["predict", "--run", str(tmp_path / "ft"), "--data", str(tmp_path / "new.yaml"),
                 "--out", str(tmp_path / "p.parquet")]) == 0
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert list(pred["id"]) == list(range(300)) and set(pred["prediction"]) <= {"fraud", "ok"}
    assert ((pred["prediction"] == "fraud") == (pred["score"] >= final["threshold"])).all()
    accuracy = float((pred["prediction"].to_numpy() == later["y"].to_numpy()).mean())
    assert accuracy > 0.85, accuracy
    later.assign(y="ok").to_csv(tmp_path / "new.csv", index=False)  # the label column is read, never used
    assert main(["predict", "--run", str(tmp_path / "ft"), "--data", str(tmp_path / "new.yaml"),
                 "--out", str(tmp_path / "p2.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "p2.parquet")["score"].equals(pred["score"])
    assert main(["predict", "--run", str(tmp_path / "nope"), "--data", str(tmp_path / "new.yaml"),
                 "--out", str(tmp_path / "q.parquet")]) == 2
    assert "not a finished finetune run folder" in capsys.readouterr().err
    # the other kind of run folder, either way round, is one line naming it and what was expected
    assert main(["embed", "--run", str(tmp_path / "ft"), "--out", str(tmp_path / "e.parquet")]) == 2
    err = capsys.readouterr().err
    assert (f"--run {tmp_path / 'ft'}: a run folder of `relssl finetune`; expected the --out folder of "
            f"`relssl pretrain`") in err and err.count("\n") == 1, err


def test_an_integer_category_with_a_gap_keeps_its_vocabulary(run):
    """The new file's integer category column has a missing cell, so pandas reads it as floats:
    1.0 is still category "1", not unknown."""
    from relssl.data.fitted import load_preprocessing, prepare_new
    from relssl.data.schema import load_schema

    folder, _ = run
    frame = ratings(60).assign(c=lambda f: np.arange(len(f)) % 3)
    frame.loc[5, "c"] = None
    frame.to_csv(folder / "gap.csv", index=False)
    (folder / "gap.yaml").write_text(SCHEMA.format(name="gap.csv"))
    ints = ratings(60).assign(c=np.arange(60) % 3)
    ints.to_csv(folder / "ints.csv", index=False)
    (folder / "ints.yaml").write_text(SCHEMA.format(name="ints.csv"))
    saved = load_preprocessing(folder / "run")
    saved["events"]["col_stats"]["c"] = {"COUNT": [["0", "1", "2"], [20, 20, 20]]}
    codes = [prepare_new(load_schema(folder / f"{n}.yaml"), saved).events.tf.feat_dict[__import__("torch_frame").categorical]
             for n in ("gap", "ints")]
    assert (codes[1][:, 0] >= 0).all() and int((codes[0][:, 0] < 0).sum()) == 1
    assert codes[0][:5, 0].tolist() == codes[1][:5, 0].tolist()


def test_a_multiclass_probe_with_a_class_absent_from_training_predicts(tmp_path):
    frame = ratings(600)
    frame["y"] = np.where(frame["x"] > 0.5, "high", "low")
    frame.loc[550:, "y"] = "late"  # a class only the test period holds
    frame.to_csv(tmp_path / "m.csv", index=False)
    text = SCHEMA.format(name="m.csv").replace("  source:", "  labels: [y]\n  source:")
    (tmp_path / "m.yaml").write_text(text)
    assert main(["finetune", "--data", str(tmp_path / "m.yaml"), "--task", "edge-multiclass:y", "--mode", "probe",
                 "--out", str(tmp_path / "probe"), *TINY]) == 0
    pred = pd.read_parquet(main(["predict", "--run", str(tmp_path / "probe"), "--data", str(tmp_path / "m.yaml"),
                                 "--out", str(tmp_path / "p.parquet")]) or tmp_path / "p.parquet")
    assert {"prob_high", "prob_late", "prob_low"} <= set(pred.columns) and len(pred) == 600
    assert set(pred["prediction"]) <= {"high", "low"}  # the absent class is never predicted


def test_a_run_folder_moves_and_resumes_from_anywhere(tmp_path, monkeypatch):
    """A relative --data is saved as an absolute path: the run resumes and embeds from another
    working directory, and from a moved folder."""
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    schema(tmp_path / "work", "r.csv", ratings(400))
    assert main(["pretrain", "--data", "r.csv.yaml", "--epochs", "1", "--out", "run", *TINY]) == 0
    saved = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert saved["data"] == str(tmp_path / "work" / "r.csv.yaml")
    (tmp_path / "work" / "run").rename(tmp_path / "elsewhere" / "moved")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["pretrain", "--out", "moved", "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert main(["embed", "--run", "moved", "--out", "e.parquet"]) == 0


def test_a_databases_new_rows(tmp_path, capsys):
    """A database run embeds a new file of the same tables: its own rows as from its data, and
    visits appended later change no earlier row's embedding; other tables are one line."""
    from tests.test_entity_tasks import SCHEMA as SHOP, churn_database

    db = churn_database(users=60)
    visits, users = db.tables["visits"].df[["user", "day", "amount"]], db.tables["users"].df
    shop = SHOP.split("tasks:")[0]

    def database(name: str, rows: pd.DataFrame) -> str:
        (tmp_path / name).mkdir()
        rows.to_csv(tmp_path / name / "visits.csv", index=False)
        users.to_csv(tmp_path / name / "users.csv", index=False)
        (tmp_path / name / "shop.yaml").write_text(shop)
        return str(tmp_path / name / "shop.yaml")

    data = database("a", visits)
    assert main(["pretrain", "--data", data, "--epochs", "1", "--out", str(tmp_path / "run"), *TINY]) == 0
    later = visits.tail(80).assign(day=lambda f: f["day"] + 1000)
    more = database("more", pd.concat([visits, later], ignore_index=True))
    assert main(["embed", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "own.parquet")]) == 0
    assert main(["embed", "--run", str(tmp_path / "run"), "--data", more, "--out", str(tmp_path / "more.parquet")]) == 0
    own, new = (pd.read_parquet(tmp_path / f).sort_values("id").reset_index(drop=True)
                for f in ("own.parquet", "more.parquet"))
    emb = [c for c in own.columns if c.startswith("emb_")]
    assert len(new) == len(visits) + 80 and set(new["split"]) == {"new"} and set(new["table"]) == {"visits"}
    np.testing.assert_allclose(new[emb].to_numpy()[:len(visits)], own[emb].to_numpy(), atol=1e-5)
    orphan = visits.assign(user=lambda f: f["user"].where(f.index != 0, 999))  # row 0's user is not in users
    with pytest.warns(UserWarning, match="1 foreign-key value.s. link no row; those rows are kept, unlinked"):
        assert main(["embed", "--run", str(tmp_path / "run"), "--data", database("orphan", orphan),
                     "--out", str(tmp_path / "orphan.parquet")]) == 0
    kept = pd.read_parquet(tmp_path / "orphan.parquet").sort_values("id")
    assert list(kept["id"]) == list(range(len(visits)))  # nothing dropped: ids are the file's rows
    np.testing.assert_allclose(kept[emb].to_numpy()[1:5], own[emb].to_numpy()[1:5], atol=1e-5)
    (tmp_path / "orphan" / "shop.yaml").write_text(shop.replace("time: {column: day, unit: D}, ", ""))
    assert main(["embed", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "orphan" / "shop.yaml"),
                 "--out", str(tmp_path / "y.parquet")]) == 2
    assert "table(s) ['visits'] have a time column in the run" in capsys.readouterr().err
    users_line = "  users: {path: users.csv, primary_key: user}\n"
    (tmp_path / "more" / "shop.yaml").write_text(shop.replace(users_line, "").replace("tables:\n", "tables:\n" + users_line))
    assert main(["embed", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "more" / "shop.yaml"),
                 "--out", str(tmp_path / "x.parquet")]) == 2
    assert "tables ['users', 'visits']; the run was trained on ['visits', 'users']" in capsys.readouterr().err
