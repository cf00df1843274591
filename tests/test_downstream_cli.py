"""`relssl finetune`, `relssl embed` and `relssl experiment downstream` end to end on tiny AML data."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from relssl.cli import main
from relssl.train.run_folder import CONFIG_END
from tests.conftest import TINY
from relssl.experiments.report import mean_std



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def aml(tmp_path_factory):
    """Tiny AML data with enough laundering rows to score, and a one-epoch pretrain run on it."""
    out = tmp_path_factory.mktemp("aml")
    assert main(["generate", "aml", "--rows", "4000", "--seed", "1", "--laundering-rate", "0.05",
                 "--out", str(out)]) == 0
    csv = out / "Synthetic_Trans.csv"
    torch.set_num_threads(1)
    assert main(["pretrain", "--data", str(csv), "--epochs", "1", "--out", str(out / "pre"), *TINY]) == 0
    return csv, out / "pre"


@pytest.mark.slow
def test_finetune_probe_and_gbdt_write_run_folders(aml, tmp_path, capsys):
    csv, pre = aml
    for mode, init in (("finetune", str(pre)), ("probe", str(pre)), ("gbdt", "scratch")):
        out = tmp_path / mode
        args = ["finetune", "--data", str(csv), "--init", init, "--mode", mode, "--label-fraction", "0.5",
                "--epochs", "2", "--out", str(out), *TINY]
        assert main(args) == 0
        final = json.loads((out / "final.json").read_text())
        assert final["task"] == "edge:Is Laundering" and final["positive_class"] == "1"
        assert {"threshold", "val/f1", "test/f1", "test/pr_auc", "test/roc_auc"} <= set(final)
        assert 0 <= final["threshold"] <= 1 and final["train_positives"] > 0
        assert (out / "model.safetensors").exists() == (mode != "gbdt")
        assert "test/pr_auc" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in records] == [(1, "train"), (1, "val"), (2, "train"), (2, "val")]
    assert all(0 <= r["pr_auc"] <= 1 for r in records if r["split"] == "val")


@pytest.mark.parametrize("extra, needle", [
    (["--channels", "32"], "model.channels=16"),
    (["--data", "synthetic-aml"], "data="),
    (["--split", "50/25/25"], "split=60/20/20"),
    (["--task", "node:isFraud"], "entity label"),
    (["--mode", "gbdt"], "no --init"),
])
def test_incompatible_finetune_options_exit_2_with_one_line(aml, tmp_path, capsys, extra, needle):
    csv, pre = aml
    assert main(["finetune", "--init", str(pre), "--out", str(tmp_path / "r"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("relssl: error:") and needle in err and "\n" not in err


def test_missing_pretrain_run_is_a_clear_error(tmp_path, capsys):
    assert main(["finetune", "--init", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "not a pretrain run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_embed_exports_every_node_and_event(aml, tmp_path):
    csv, pre = aml
    assert main(["embed", "--run", str(pre), "--out", str(tmp_path / "e.parquet")]) == 0
    assert main(["embed", "--run", str(pre), "--data", str(csv), "--out", str(tmp_path / "again.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "e.parquet")
    nodes, events = table[table["kind"] == "node"], table[table["kind"] == "event"]
    emb = [c for c in table.columns if c.startswith("emb_")]
    assert len(emb) == 16 and table[emb].notna().all().all()
    assert sorted(events["id"]) == list(range(4000)) and set(events["split"]) == {"train", "val", "test"}
    assert list(nodes["id"]) == list(range(len(nodes))) and nodes["key_account"].notna().all()
    assert events["key_account"].isna().all() and nodes["split"].isna().all()
    assert table.equals(pd.read_parquet(tmp_path / "again.parquet"))  # fixed neighbour draws


@pytest.mark.slow
def test_downstream_experiment_report_matches_its_runs(aml, tmp_path):
    csv, _ = aml
    out = tmp_path / "exp"
    args = ["experiment", "downstream", "--data", str(csv), "--label-fractions", "1,0.5", "--seeds", "2",
            "--epochs", "1", "--finetune-epochs", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert (out / "metric_vs_fraction.png").stat().st_size > 0
    assert "relssl experiment downstream --data" in report and "--finetune-epochs 1" in report
    assert (out / "runs" / "mcm-seed0" / "final.json").exists()  # one recipe: labelled by its objectives
    names = {"GBDT on raw features": "gbdt", "GBDT on raw + graph features": "gbdt-graph",
             "scratch + finetune": "scratch", "pretrained + probe": "probe", "pretrained + finetune": "finetune",
             "trivial reference (training positive rate)": "reference"}
    rows = [line for line in report.splitlines() if line.startswith("| ") and " % |" in line]
    assert len(rows) == 12
    means = {}
    for line in rows:
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        fraction, method = float(cells[0].rstrip(" %")) / 100, names[cells[1]]
        finals = [json.loads((out / "downstream" / f"{method}-f{fraction:g}-seed{s}" / "final.json").read_text())
                  for s in (0, 1)]
        for key, cell in zip(["test/f1", "test/pr_auc", "test/roc_auc", "threshold"], cells[3:]):
            mean, std = mean_std([f[key] for f in finals])
            assert cell == f"{mean:.3f} ± {std:.3f}", (line, key)
        means[(method, fraction)] = mean_std([f["test/f1"] for f in finals])[0]
    for fraction in (0.5, 1.0):
        diff = means[("finetune", fraction)] - means[("scratch", fraction)]
        assert f"{diff:+.3f} at {fraction * 100:g} %" in report
    assert re.search(r"pre-training (helped|did not help)", report)
    stamp = (out / "downstream" / "probe-f0.5-seed1" / "final.json").stat().st_mtime_ns
    assert main(args) == 0  # a second call reuses every finished run
    assert (out / "downstream" / "probe-f0.5-seed1" / "final.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_downstream_experiment_runs_backbone_methods_under_each_protocol(aml, tmp_path):
    csv, _ = aml
    out = tmp_path / "exp"
    args = ["experiment", "downstream", "--data", str(csv), "--label-fractions", "1", "--seeds", "1",
            "--epochs", "1", "--finetune-epochs", "1", "--protocols", "transductive,causal", "--out", str(out), *TINY]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for method in ("scratch", "probe", "finetune"):
        causal = yaml.safe_load((out / "downstream" / f"{method}-f1-seed0" / "config.yaml").read_text())
        transductive = yaml.safe_load((out / "downstream" / f"{method}-transductive-f1-seed0" / "config.yaml").read_text())
        assert causal["train"]["time_aware"] is True and transductive["train"]["time_aware"] is False
    assert not (out / "downstream" / "gbdt-transductive-f1-seed0").exists()  # trees' features are causal anyway
    assert "| 100 % | scratch + finetune, transductive |" in report and "**Ladder" in report


@pytest.mark.slow
def test_downstream_experiment_compares_recipes_on_the_same_downstream_runs(aml, tmp_path):
    """--recipes: each recipe pre-trains and has its own pre-trained rows; trees, scratch and the
    reference train once; the verdicts and the recipe comparison come from the runs' numbers."""
    csv, _ = aml
    out = tmp_path / "exp"
    args = ["experiment", "downstream", "--data", str(csv), "--recipes", "mcm; mcm,mv:weighted:1,0.5",
            "--label-fractions", "1", "--seeds", "1", "--epochs", "1", "--finetune-epochs", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    weighted = "mcm+mv-weighted-1,0.5"
    for label, objectives, combiner in (("mcm", ["mcm"], "sum"), (weighted, ["mcm", "mv"], "weighted")):
        saved = yaml.safe_load((out / "runs" / f"{label}-seed0" / "config.yaml").read_text())
        assert (saved["objectives"], saved["combiner"]) == (objectives, combiner)
        for method in ("probe", "finetune"):
            init = yaml.safe_load((out / "downstream" / label / f"{method}-f1-seed0" / "config.yaml").read_text())["init"]
            assert Path(init).name == f"{label}-seed0"
    downstream = sorted(p.name for p in (out / "downstream").iterdir())
    assert downstream == sorted(["gbdt-f1-seed0", "gbdt-graph-f1-seed0", "scratch-f1-seed0", "reference-f1-seed0",
                                 "mcm", weighted])
    report = (out / "report.md").read_text()
    f1 = {label: json.loads((out / "downstream" / label / "finetune-f1-seed0" / "final.json").read_text())["test/f1"]
          for label in ("mcm", weighted)}
    for label, title in (("mcm", "MCM"), (weighted, "MCM+MV, weighted 1, 0.5")):
        assert f"| 100 % | pretrained ({title}) + finetune |" in report
        assert f"**Verdict, {title} (test F1" in report
    scratch = json.loads((out / "downstream" / "scratch-f1-seed0" / "final.json").read_text())["test/f1"]
    titles = {"mcm": "MCM", weighted: "MCM+MV, weighted 1, 0.5"}
    for label, title in titles.items():
        verdict = report.split(f"**Verdict, {title} (test F1")[1].split("\n")[0]
        assert f"minus scratch: {f1[label] - scratch:+.3f} at 100 %" in verdict
    best, second = sorted(f1, key=f1.get, reverse=True)
    assert (f"**Recipes (test F1, pretrained + finetune, best first):** at 100 % {titles[best]}, "
            f"{f1[best] - f1[second]:+.3f} over {titles[second]}.") in report
    # the recipes in another order, a MoCo option for a recipe of its own: nothing trained before trains again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "downstream").rglob("final.json")}
    again = [a if a != "mcm; mcm,mv:weighted:1,0.5" else "mcm,mv:weighted:1,0.5; mcm; mcm,mv:moco" for a in args]
    assert main([*again, "--moco-rho", "0.1"]) == 0
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    moco = yaml.safe_load((out / "runs" / "mcm+mv-moco-seed0" / "config.yaml").read_text())
    assert moco["combiner_options"] == {"rho": 0.1}
    assert yaml.safe_load((out / "runs" / "mcm-seed0" / "config.yaml").read_text())["combiner_options"] == {}


@pytest.mark.parametrize("recipes, extra, message", [
    ("mcm,lp:fancy", [], "--recipes recipe 'mcm,lp:fancy': --combiner 'fancy'"),
    ("mcm,lp:weighted:1", [], "--recipes recipe 'mcm,lp:weighted:1': --combiner weighted needs --weights with 2"),
    ("mcm; mcm:sum", [], "--recipes: recipe mcm is given twice"),
    ("mcm;xyz", [], "--recipes recipe 'xyz': --objectives 'xyz'"),
    ("mcm:sum:1:2", [], "expected ';'-separated OBJECTIVES[:COMBINER[:WEIGHTS]]"),
    ("mcm", ["--combiner", "moco"], "drop --combiner"),
    ("mcm,lp:weighted:1,x", [], "--recipes recipe 'mcm,lp:weighted:1,x': --weights '1,x'"),
    ("mcm; mcm,lp:pcgrad", ["--moco-beta", "0.5"], "--moco-beta: no recipe in --recipes uses moco"),
    ("mcm; mcm,lp:pcgrad", ["--config", "CONFIG"], "drop combiner, weights from --config"),
])
def test_bad_recipes_are_one_line_errors(aml, tmp_path, capsys, recipes, extra, message):
    csv, _ = aml
    (tmp_path / "config.yaml").write_text("combiner: weighted\nweights: [1, 0.1]\n")
    extra = [str(tmp_path / "config.yaml") if e == "CONFIG" else e for e in extra]
    args = ["experiment", "downstream", "--data", str(csv), "--recipes", recipes, *extra, "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x" / "runs").exists()


def test_bad_protocols_are_one_line_errors(aml, tmp_path, capsys):
    csv, _ = aml
    args = ["experiment", "downstream", "--data", str(csv), "--protocols", "causal,future", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "--protocols 'causal,future'" in capsys.readouterr().err


def test_finetune_protocol_names_the_neighbourhood_it_sampled(aml, tmp_path):
    csv, _ = aml
    for protocol in ("causal", "transductive"):
        out = tmp_path / protocol
        assert main(["finetune", "--data", str(csv), "--protocol", protocol, "--epochs", "1", "--out", str(out),
                     *TINY]) == 0
        assert json.loads((out / "final.json").read_text())["protocol"] == protocol
        saved = yaml.safe_load((out / "config.yaml").read_text())
        assert saved["train"]["time_aware"] is (protocol == "causal")
    # later events in the transductive neighbourhoods change what the model sees, so the scores differ
    scores = [json.loads((tmp_path / p / "final.json").read_text())["test/pr_auc"] for p in ("causal", "transductive")]
    assert scores[0] != scores[1]


@pytest.mark.parametrize("encoder", ["mlp", "resnet"])
def test_a_light_row_encoder_pretrains_finetunes_and_embeds(aml, tmp_path, encoder):
    csv, _ = aml
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    assert main(["pretrain", "--data", str(csv), "--objectives", "mcm,mv", "--row-encoder", encoder, "--epochs", "1",
                 "--out", str(pre), *TINY]) == 0
    assert yaml.safe_load((pre / "config.yaml").read_text())["model"]["row_encoder"] == encoder
    assert main(["finetune", "--data", str(csv), "--init", str(pre), "--epochs", "1", "--out", str(ft), *TINY]) == 0
    assert 0 <= json.loads((ft / "final.json").read_text())["test/pr_auc"] <= 1
    assert main(["embed", "--run", str(pre), "--out", str(tmp_path / "e.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "e.parquet")) > 4000


@pytest.mark.slow
def test_the_downstream_experiment_on_one_table_without_keys_has_no_graph_features(tmp_path):
    """A single wide table (no keys): the trees get its row, no graph features, and the report says so."""
    import numpy as np

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600), "c": rng.choice(["x", "y"], 600)})
    frame["y"] = np.where(frame["a"] + rng.normal(scale=0.5, size=600) > 0.5, 1, 0)
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.yaml").write_text("events:\n  path: t.csv\n  columns: {a: numerical, b: numerical, c: categorical}\n"
                                     "  labels: [y]\n")
    args = ["experiment", "downstream", "--data", str(tmp_path / "t.yaml"), "--task", "edge:y", "--label-fractions", "1",
            "--seeds", "1", "--epochs", "1", "--finetune-epochs", "1", "--row-encoder", "mlp", "--out",
            str(tmp_path / "x"), *TINY]
    assert main(args) == 0
    report = (tmp_path / "x" / "report.md").read_text()
    assert "| GBDT on raw features |" in report and "graph features" not in report.split("| labels |")[1]


def test_tuned_trees_are_the_gbdt_modes_and_named_in_their_run(aml, tmp_path, capsys):
    csv, _ = aml
    assert main(["finetune", "--data", str(csv), "--trees", "tuned", "--out", str(tmp_path / "ft"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--trees tuned tunes the trees of --mode gbdt or gbdt-graph, not --mode finetune" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["finetune", "--data", str(csv), "--mode", "gbdt", "--trees", "tuned", "--out", str(tmp_path / "g"),
                 *TINY]) == 0
    assert yaml.safe_load((tmp_path / "g" / "config.yaml").read_text())["trees"] == "tuned"


def test_resuming_a_run_that_predates_trees_reads_it_as_the_default(aml, tmp_path, capsys):
    csv, _ = aml
    out = tmp_path / "g"
    assert main(["finetune", "--data", str(csv), "--mode", "gbdt", "--out", str(out), *TINY]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["trees"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved) + CONFIG_END + "\n")  # whole, as relssl writes it
    assert main(["finetune", "--resume", "--out", str(out), "--trees", "tuned"]) == 2
    assert "--trees tuned (the run has default)" in capsys.readouterr().err
    # the fine-tuning flags, too, are the run's: one that differs is refused, not ignored
    assert main(["finetune", "--resume", "--out", str(out), "--mode", "probe", "--label-fraction", "0.5",
                 "--protocol", "transductive"]) == 2
    err = capsys.readouterr().err
    assert ("--mode probe (the run has gbdt); --label-fraction 0.5 (the run has 1.0); --time-aware False (the run "
            "has True)") in err and len(err.strip().splitlines()) == 1
    assert main(["finetune", "--resume", "--out", str(out), "--trees", "default", "--mode", "gbdt",
                 "--init", "scratch", "--label-fraction", "1"]) == 0


@pytest.mark.slow
def test_a_finetune_runs_config_reruns_it_and_flags_override_it(aml, tmp_path, capsys):
    csv, pre = aml
    first = tmp_path / "first"
    assert main(["finetune", "--data", str(csv), "--init", str(pre), "--mode", "probe", "--label-fraction", "0.5",
                 "--protocol", "transductive", "--out", str(first), *TINY]) == 0
    config = str(first / "config.yaml")
    assert main(["finetune", "--config", config, "--out", str(tmp_path / "again")]) == 0
    final = lambda run: {k: v for k, v in json.loads((tmp_path / run / "final.json").read_text()).items()  # noqa: E731
                         if k.startswith("test/") or k == "protocol"}
    # task, init, mode, fraction, protocol (not the --init run's causal one) and training settings from the file
    assert final("again") == final("first") and final("again")["protocol"] == "transductive"
    assert main(["finetune", "--config", config, "--mode", "gbdt", "--init", "scratch", "--label-fraction", "1",
                 "--trees", "tuned", "--protocol", "causal", "--out", str(tmp_path / "trees")]) == 0
    saved = yaml.safe_load((tmp_path / "trees" / "config.yaml").read_text())
    assert (saved["mode"], saved["label_fraction"], saved["task"]) == ("gbdt", 1.0, "edge:Is Laundering")
    assert (saved["trees"], saved["train"]["time_aware"]) == ("tuned", True)
    capsys.readouterr()
    assert main(["finetune", "--config", config, "--protocol", "causal", "--no-time-aware", "--out",
                 str(tmp_path / "contradiction")]) == 2
    err = capsys.readouterr().err
    assert "--protocol causal contradicts --no-time-aware" in err and len(err.strip().splitlines()) == 1
    # a fine-tuning key from the file is read as its type, or refused in one line naming the file and key
    for key, value, ok in [("label_fraction", "1e-1", True), ("label_fraction", None, False), ("init", None, False)]:
        edited = yaml.safe_load((first / "config.yaml").read_text()) | {key: value}
        (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
        capsys.readouterr()
        code = main(["finetune", "--config", str(tmp_path / "edited.yaml"), "--out", str(tmp_path / f"e-{key}-{ok}")])
        err = capsys.readouterr().err
        assert code == (0 if ok else 2), err
        if ok:
            assert yaml.safe_load((tmp_path / f"e-{key}-{ok}" / "config.yaml").read_text())[key] == 0.1
        else:
            assert f"--config {tmp_path / 'edited.yaml'}: {key}: expected" in err and len(err.strip().splitlines()) == 1
    bad = yaml.safe_load((first / "config.yaml").read_text()) | {"labels": 3}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    capsys.readouterr()
    assert main(["finetune", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "unknown fine-tuning keys ['labels']" in err and len(err.strip().splitlines()) == 1
