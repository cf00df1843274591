"""The Python API: the notebook flow of docs/api.md runs as written, and bad options are one line."""
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

import relssl
from relssl.errors import RelsslError

SMALL = dict(channels=16, heads=2, row_layers=1, gnn_layers=1, fanouts=[4, 2], batch_size=128,
             train_rows_per_epoch=300, eval_rows=100)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "notebook_flow.py"


@pytest.mark.slow
def test_the_notebook_flow_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(tmp_path)])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "MCM accuracy" in out and "test PR-AUC" in out
    model, clf = relssl.load(tmp_path / "pre"), relssl.load(tmp_path / "ft")
    assert isinstance(model, relssl.Pretrained) and isinstance(clf, relssl.Finetuned)
    assert clf.config.init == str(tmp_path / "pre") and clf.config.train.model.channels == 16
    assert model.config.objectives == ["mcm"] and "mcm/acc_ref" in model.metrics
    predictions = clf.predict(str(tmp_path / "aml" / "Small_Trans.csv"))
    assert isinstance(predictions, pd.DataFrame) and len(predictions) == 6000
    assert set(predictions["prediction"]) <= {"0", "1"} and predictions["score"].between(0, 1).all()


def test_bad_options_are_one_line(tmp_path):
    with pytest.raises(RelsslError, match="unknown keys \\['epoch'\\]"):
        relssl.pretrain("synthetic-aml", out=tmp_path / "x", epoch=3)
    with pytest.raises(RelsslError, match="config: epochs: expected an integer, got 'three'"):
        relssl.pretrain("synthetic-aml", out=tmp_path / "x", epochs="three")
    with pytest.raises(RelsslError, match="not a finished run folder"):
        relssl.load(tmp_path / "nothing")
    with pytest.raises(AttributeError):
        relssl.nope  # noqa: B018


def test_a_dataframe_becomes_data(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({"sender": rng.integers(0, 40, n).astype(str), "receiver": rng.integers(0, 40, n).astype(str),
                          "amount": rng.lognormal(size=n), "channel": rng.choice(["web", "app"], n),
                          "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h")})
    data = relssl.from_dataframe(frame, tmp_path / "data", {"amount": "numerical", "channel": "categorical"},
                                 time="when", source="sender", target="receiver", name="payments")
    model = relssl.pretrain(data, out=tmp_path / "run", epochs=1, channels=16, heads=2, row_layers=1, fanouts=[4, 2],
                            train_rows_per_epoch=300, eval_rows=100)
    emb = model.embed()
    accounts = set(frame["sender"]) | set(frame["receiver"])
    assert (emb["kind"] == "event").sum() == n and (emb["kind"] == "node").sum() == len(accounts)
    with pytest.raises(RelsslError, match=r"column\(s\) \['nope'\] not in the frame"):
        relssl.from_dataframe(frame, tmp_path / "bad", {"nope": "numerical"})


def test_new_rows_as_a_dataframe(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame({"sender": rng.integers(0, 30, n).astype(str), "receiver": rng.integers(0, 30, n).astype(str),
                          "amount": rng.lognormal(size=n), "when": np.arange(n) * 3600})
    data = relssl.from_dataframe(frame, tmp_path / "d", {"amount": "numerical"}, time="when", source="sender",
                                 target="receiver")
    model = relssl.pretrain(data, out=tmp_path / "run", epochs=1, **SMALL)
    own = model.embed().query("kind == 'event'").reset_index(drop=True)
    new = model.embed(frame).query("kind == 'event'").reset_index(drop=True)
    emb = [c for c in own.columns if c.startswith("emb_")]
    assert np.allclose(own[emb].to_numpy(), new[emb].to_numpy(), atol=1e-5) and set(new["split"]) == {"new"}
    with pytest.raises(RelsslError, match="expected one DataFrame"):
        model.embed({"a": frame})
    # a bad frame is named as the frame, not as the temporary file it went through
    with pytest.raises(RelsslError, match=r"^the new rows' DataFrame: missing column\(s\) \['amount'\]") as err:
        model.embed(frame.drop(columns=["amount"]))
    assert "relssl-new-" not in str(err.value)


def test_a_relbench_database_becomes_data(tmp_path):
    import numpy as np

    base = pytest.importorskip("relbench.base")
    rng = np.random.default_rng(0)
    users = pd.DataFrame({"user_id": np.arange(40), "country": rng.choice(["fr", "de", "uk"], 40)})
    n = 500
    reviews = pd.DataFrame({"user_id": rng.integers(0, 40, n), "stars": rng.integers(1, 6, n).astype(float),
                            "length": rng.lognormal(3, 1, n),
                            "at": pd.Timestamp("2020-02-01") + pd.to_timedelta(np.arange(n), "h")})
    rb = base.Database({"users": base.Table(users, {}, "user_id"),
                        "reviews": base.Table(reviews, {"user_id": "users"}, None, "at")})
    data = relssl.from_relbench(rb, tmp_path / "rb", labels={"reviews": ["stars"]})
    model = relssl.pretrain(data, out=tmp_path / "run", table="reviews", epochs=1, **SMALL)
    assert model.metrics["mcm/rmse_ref"] > 0 and (tmp_path / "rb" / "reviews.parquet").exists()
    clf = relssl.finetune(out=tmp_path / "ft", init=model, task="reviews.stars", epochs=1, **SMALL)
    assert clf.metrics["kind"] == "regression" and len(clf.predict(data)) == n
