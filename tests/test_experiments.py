import json
import math

import numpy as np
import pytest
import torch

from relssl.cli import main
from relssl.errors import RelsslError
from relssl.experiments.report import higher_is_better, mean_std, metric_table
from relssl.experiments.runner import check_same_settings
from relssl.version import source_digest
from tests.test_cli import TINY, aml_csv  # noqa: F401  (module-scoped fixture)


def test_metric_table_mean_std_and_bold_best():
    results = {
        "a": [{"final": {"x/acc": 0.5, "x/rmse": 1.0}}, {"final": {"x/acc": 0.7, "x/rmse": 3.0}}],
        "b": [{"final": {"x/acc": 0.9, "x/rmse": 2.5}}, {"final": {"x/acc": 0.9, "x/rmse": 2.5}}],
    }
    table = metric_table(results, {"x/acc": "ACC", "x/rmse": "RMSE"}, "run", digits=2)
    lines = table.splitlines()
    assert lines[0] == "| run | ACC | RMSE |"
    assert lines[2] == "| a | 0.60 ± 0.14 | **2.00 ± 1.41** |"  # sample std of (1, 3) = 1.414
    assert lines[3] == "| b | **0.90 ± 0.00** | 2.50 ± 0.00 |"
    assert len(lines) == 4  # no references given: no reference row
    assert mean_std([1.0, float("nan")]) == (1.0, 0.0)
    assert not any(higher_is_better(m) for m in ("test/rmse", "test/mae", "mcm/loss", "f2v/mpr", "mcm/rmse/col"))
    assert all(higher_is_better(m) for m in ("test/f1", "test/macro_f1", "mcm/acc", "lp/mrr"))
    assert math.isnan(mean_std([])[0])
    # each row's references sit beside their metric, never bold (a reference may depend on the row's
    # setting); per-column metrics keep their direction
    for run, ref in zip([*results["a"], *results["b"]], (0.25, 0.35, 0.5, 0.5)):
        run["final"].update({"x/acc_ref": ref, "x/rmse_ref/col": 4.0, "x/rmse/col": run["final"]["x/rmse"]})
    table = metric_table(results, {"x/acc": "ACC", "x/rmse/col": "RMSE col"}, "run", digits=2)
    assert table.splitlines()[0] == "| run | ACC | ACC ref | RMSE col | RMSE col ref |"
    assert table.splitlines()[2:] == ["| a | 0.60 ± 0.14 | 0.30 ± 0.07 | **2.00 ± 1.41** | 4.00 ± 0.00 |",
                                      "| b | **0.90 ± 0.00** | 0.50 ± 0.00 | 2.50 ± 0.00 | 4.00 ± 0.00 |"]


@pytest.mark.slow
def test_mask_experiment_writes_report_and_curves(aml_csv, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "exp"
    args = ["experiment", "masks", "--data", str(aml_csv), "--objectives", "mcm", "--seeds", "2",
            "--epochs", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for mask in ("replace", "bert", "remove"):
        assert f"| {mask} |" in report
        assert (out / "runs" / f"{mask}-seed1" / "final.json").exists()
    assert "relssl experiment masks" in report and (out / "curves.png").stat().st_size > 0
    # finished runs are reused: a second call trains nothing and writes the same table
    before = {p: p.stat().st_mtime for p in (out / "runs").rglob("final.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("final.json")} == before
    assert (out / "report.md").read_text() == report
    # ... but never runs trained with other settings: the report would mix two commands
    changed = [a if a != "1" or args[i - 1] != "--epochs" else "2" for i, a in enumerate(args)]
    assert main(changed) == 2
    assert "trained with other settings (epochs 1 there, 2 now)" in capsys.readouterr().err
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("final.json")} == before


@pytest.mark.slow
def test_combo_experiment_covers_every_subset_with_mcm(aml_csv, tmp_path):  # noqa: F811
    out = tmp_path / "combos"
    args = ["experiment", "combos", "--data", str(aml_csv), "--combiners", "sum,moco", "--seeds", "1",
            "--epochs", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for subset in ("MCM", "MCM+MV", "MCM+AM", "MCM+LP", "MCM+MV+AM", "MCM+MV+LP", "MCM+AM+LP", "MCM+MV+AM+LP"):
        assert f"| {subset} |" in report
    assert "moco MRR" in report and "std across subsets (moco)" in report
    # MCM alone under MoCo is the sum's run: 8 subsets x 2 combiners - 1
    assert len(list((out / "runs").glob("*/final.json"))) == 15 and not (out / "runs" / "mcm-moco-seed0").exists()
    assert "MCM alone under moco is the sum's run" in report
    # every MoCo run logs its task weights, which stay on the simplex
    weights = [json.loads(line) for line in (out / "runs" / "mcm+mv+am+lp-moco-seed0" / "metrics.jsonl").open()]
    lam = [v for k, v in weights[0].items() if k.startswith("weight/")]
    assert len(lam) == 4 and abs(sum(lam) - 1) < 1e-5 and min(lam) >= 0


@pytest.mark.slow
def test_tuned_sum_shares_the_sums_runs_and_names_the_weight_it_chose(aml_csv, tmp_path):  # noqa: F811
    out = tmp_path / "combos"
    args = ["experiment", "combos", "--data", str(aml_csv), "--objectives", "mcm,lp", "--combiners", "sum,tuned",
            "--seeds", "1", "--epochs", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    runs = sorted(p.parent.name for p in (out / "runs").glob("*/final.json"))
    assert runs == ["mcm+lp-sum-seed0", "mcm+lp-w0.1-seed0", "mcm+lp-w0.3-seed0", "mcm+lp-w3-seed0", "mcm-sum-seed0"]
    loss = {w: min(json.loads(line)["mcm/loss"] for line in (out / "runs" / f"mcm+lp-{label}-seed0" / "metrics.jsonl").open()
                   if json.loads(line)["split"] == "val")
            for w, label in ((0.1, "w0.1"), (0.3, "w0.3"), (1, "sum"), (3, "w3"))}
    assert f"(chosen w: MCM+LP {min(loss, key=loss.get):g})." in (out / "report.md").read_text()


@pytest.mark.slow
def test_combo_experiment_objectives_narrow_the_pool_and_reuse_needs_the_same_data(aml_csv, tmp_path,  # noqa: F811
                                                                                     capsys):
    out, csv = tmp_path / "combos", tmp_path / "aml.csv"
    csv.write_bytes(aml_csv.read_bytes())
    args = ["experiment", "combos", "--data", str(csv), "--combiners", "sum", "--seeds", "1",
            "--epochs", "1", "--out", str(out), *TINY]
    assert main([*args, "--objectives", "am,lp"]) == 2
    assert "--objectives am,lp: combos compares subsets with MCM" in capsys.readouterr().err
    assert main([*args, "--objectives", "mcm,am"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["mcm+am-sum-seed0", "mcm-sum-seed0"]
    report = (out / "report.md").read_text()
    assert "| MCM+AM |" in report and "| MCM+LP |" not in report and "{MCM, AM}" in report
    assert f"Code: every run (2) was trained by this command's relssl source ({source_digest()})." in report
    # a finished run trained by other code is reused, and both the log and the report say so
    data_json = out / "runs" / "mcm+am-sum-seed0" / "data.json"
    data_json.write_text(json.dumps({**json.loads(data_json.read_text()), "code": ["0123456789ab"]}))
    capsys.readouterr()
    assert main([*args, "--objectives", "mcm,am"]) == 0
    assert "[mcm+am-sum, seed 0] reusing" in capsys.readouterr().out
    assert (f"Code: 1 of 2 runs were trained by this command's relssl source ({source_digest()}); reused from "
            f"earlier: 1 other code (`runs/mcm+am-sum-seed0`).") in (out / "report.md").read_text()
    # a same-length edit of one amount: the finished runs were trained on other data
    text = csv.read_text()
    digit = text.index("\n") + text[text.index("\n"):].index(".") + 1
    csv.write_text(text[:digit] + ("1" if text[digit] != "1" else "2") + text[digit + 1:])
    assert main([*args, "--objectives", "mcm,am"]) == 2
    err = capsys.readouterr().err
    assert "mcm-sum-seed0 holds a run trained on other data (aml.csv changed since)" in err and err.count("\n") == 1


def test_tuned_sum_sweeps_the_other_tasks_weight_and_keeps_the_best_on_validation():
    from relssl.experiments.combos import TUNED_WEIGHTS, chosen_runs, grid_configs
    from relssl.train.pretrain import PretrainConfig

    subsets = [("mcm",), ("mcm", "lp")]
    configs = grid_configs(PretrainConfig(), subsets, ["sum", "tuned"])
    # w = 1 is the sum's run, shared
    assert set(configs) == {"mcm-sum", "mcm+lp-sum", *(f"mcm+lp-w{w:g}" for w in TUNED_WEIGHTS if w != 1)}
    assert configs["mcm+lp-w0.3"].combiner == "weighted" and configs["mcm+lp-w0.3"].weights == [1.0, 0.3]
    assert configs == grid_configs(PretrainConfig(), subsets, ["tuned"])

    def run(val_loss, test_acc):  # best epoch 2: its validation loss decides, not the last epoch's
        history = [{"split": "val", "epoch": 1, "mcm/loss": 0.0}, {"split": "val", "epoch": 2, "mcm/loss": val_loss}]
        return {"final": {"best_epoch": 2, "mcm/acc": test_acc}, "history": history}

    results = {label: [run(1.0, 0.5)] for label in configs}
    results["mcm+lp-w3"] = [run(0.7, 0.2), run(0.9, 0.2)]  # best mean validation loss, worse test
    chosen = chosen_runs(results, subsets, ["sum", "tuned"])
    assert chosen[("mcm", "lp"), "tuned"] == "mcm+lp-w3" and chosen[("mcm",), "tuned"] == "mcm-sum"
    assert chosen[("mcm", "lp"), "sum"] == "mcm+lp-sum"
    results["mcm+lp-sum"] = [run(0.5, 0.4)]
    assert chosen_runs(results, subsets, ["tuned"])[("mcm", "lp"), "tuned"] == "mcm+lp-sum"


def test_a_lone_task_shares_the_sums_run_under_combiners_that_reduce_to_it():
    from relssl.experiments.combos import chosen_runs, grid_configs
    from relssl.train.pretrain import PretrainConfig

    subsets, combiners = [("mcm",), ("mcm", "lp")], ["moco", "pcgrad", "cagrad", "uw"]
    configs = grid_configs(PretrainConfig(), subsets, combiners)
    # MoCo and PCGrad with one task are the sum bit for bit; CAGrad rescales, UW learns a weight
    assert set(configs) == {"mcm-sum", "mcm-cagrad", "mcm-uw", *(f"mcm+lp-{c}" for c in combiners)}
    assert configs["mcm-sum"].combiner == "sum" and configs["mcm+lp-moco"].combiner == "moco"
    chosen = chosen_runs({}, subsets, combiners)
    assert chosen[("mcm",), "moco"] == chosen[("mcm",), "pcgrad"] == "mcm-sum"
    assert chosen[("mcm",), "uw"] == "mcm-uw" and chosen[("mcm", "lp"), "pcgrad"] == "mcm+lp-pcgrad"


@pytest.mark.slow
def test_bench_tasks_times_objectives_and_combiners(aml_csv, tmp_path):  # noqa: F811
    out = tmp_path / "bench.json"
    assert main(["bench-tasks", "--data", str(aml_csv), "--objectives", "mcm;mcm,lp", "--task-sets", "mcm,lp",
                 "--combiners", "sum,moco", "--steps", "1", "--batch-size", "64", "--device", "cpu",
                 "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu"
    assert set(figures["objectives"]) == {"mcm", "mcm,lp"} and set(figures["combiners"]["mcm,lp"]) == {"sum", "moco"}
    assert all(0 < s < 60 for s in [*figures["objectives"].values(), *figures["combiners"]["mcm,lp"].values()])
    assert set(figures["repeated_pairs"]) == {"mcm", "mcm,lp"} and all(0 < s < 60 for s in figures["repeated_pairs"].values())


def test_the_repeated_pair_bench_case_repeats_pairs_thousands_of_times():
    from relssl.bench_tasks import repeated_pairs

    data = repeated_pairs()
    pairs = np.unique(np.minimum(data.src, data.dst) * 400 + np.maximum(data.src, data.dst), return_counts=True)[1]
    assert np.sort(pairs)[-60:].min() > 2000 and data.num_events == 200_000


def test_the_relational_bench_database_and_both_readings():
    from relssl.bench import bench_relational, generated_database

    db = generated_database(3000)
    assert {t: len(db.tables[t]) for t in db.tables} == {"orders": 3000, "customers": 30, "products": 10}
    assert all((db.links["orders", i] >= 0).all() for i in (0, 1))
    assert (np.diff(db.tables["orders"].time) >= 0).all()
    for reading in ("events", "database"):
        out = bench_relational(3000, reading, steps=1, batch_size=64)
        assert out["reading"] == reading and out["pretrain_rows_per_s"] > 0
        assert 0 <= out["sampling_share_of_step"] < 1


def test_the_bench_gives_every_figure_of_one_size():
    """``relssl bench``'s figures for one size, each positive, the ratio of step to backbone from
    their own figures (the timing order itself is bench.py's, not observable here)."""
    from relssl.bench import bench_one

    out = bench_one(3000, steps=3, batch_size=64)
    for key in ("generate_rows_per_s", "read_rows_per_s", "encode_rows_per_s", "sampler_edges_per_s",
                "backbone_rows_per_s", "pretrain_rows_per_s", "loop_rows_per_s", "peak_rss_mib"):
        assert out[key] > 0, key
    assert out["pretrain_vs_backbone"] == pytest.approx(out["pretrain_rows_per_s"] / out["backbone_rows_per_s"])
    assert out["sampling_share_of_step"] > 0 and out["workers"] == 0  # a share of noisy timings: no upper bound


@pytest.mark.slow
def test_the_loop_bench_times_each_setting_on_one_data_set(tmp_path, capsys):
    out = tmp_path / "loop.json"
    assert main(["bench", "--loop", "64:0:fp32, 64:2:fp32, 128:1:bf16", "--rows", "3000", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [(f["batch_size"], f["workers"], f["precision"]) for f in figures] == [
        (64, 0, "fp32"), (64, 2, "fp32"), (128, 1, "bf16")]
    assert all(f["rows"] == 3000 and f["rows_per_s"] > 0 and 0 <= f["waiting_share"] < 1 for f in figures)
    assert [f["steps"] for f in figures] == [29, 29, 15]  # 1,800 training rows: fewer steps than asked for
    assert figures[0]["loss"] == figures[1]["loss"]  # the input threads change the speed, not the run
    assert all(math.isfinite(f["loss"]) and "gpu_busy_percent" not in f for f in figures)  # no GPU: no busy figure
    assert "| 128 | 1 | bf16 |" in capsys.readouterr().out
    assert main(["bench", "--loop", "64:0:fp32", "--epoch", "--rows", "3000"]) == 2


@pytest.mark.parametrize("spec", ["512", "512:1", "0:1:fp32", "512:x:fp32", "512:1:fp8", ","])
def test_a_bad_loop_setting_is_one_line(spec, capsys):
    assert main(["bench", "--loop", spec, "--rows", "3000"]) == 2
    err = capsys.readouterr().err
    assert "--loop" in err and err.count("\n") == 1


def test_bench_on_a_missing_gpu_is_a_clear_error(aml_csv, capsys):  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench-tasks", "--data", str(aml_csv), "--objectives", "mcm", "--task-sets", "mcm",
                 "--combiners", "sum", "--steps", "1", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err


def test_reuse_check_compares_nested_settings_but_not_runtime_ones(tmp_path):
    from relssl.eval.finetune import FinetuneConfig
    from relssl.nn.backbone import ModelConfig
    from relssl.train.pretrain import PretrainConfig

    (tmp_path / "config.yaml").write_text("task: edge:y\ntrain: {epochs: 3, device: cuda, model: {channels: 32, "
                                          "fanouts: [8, 4]}}\n")

    def wanted(fanouts=(8, 4), task=None):
        return FinetuneConfig(task=task, train=PretrainConfig(epochs=3, device="cpu",
                                                              model=ModelConfig(channels=32, fanouts=list(fanouts))))

    check_same_settings(tmp_path, wanted(), resolved=("task",))  # device and the resolved task are not compared
    with pytest.raises(RelsslError, match=r"train.model.fanouts \[8, 4\] there, \[10, 5\] now"):
        check_same_settings(tmp_path, wanted((10, 5)), resolved=("task",))
    with pytest.raises(RelsslError, match="task 'edge:y' there, None now"):
        check_same_settings(tmp_path, wanted())
    check_same_settings(tmp_path / "missing", wanted())  # nothing there yet: nothing to compare
    (tmp_path / "config.yaml").write_text(f"data: {tmp_path / 'config.yaml'}\n")
    check_same_settings(tmp_path, PretrainConfig(data=str(tmp_path / ".." / tmp_path.name / "config.yaml")))  # one file
    with pytest.raises(RelsslError, match="data"):
        check_same_settings(tmp_path, PretrainConfig(data="synthetic-aml"))


@pytest.mark.slow
def test_jobs_train_a_grid_in_parallel_processes_with_the_serial_results(aml_csv, tmp_path, capsys):  # noqa: F811
    args = ["experiment", "combos", "--data", str(aml_csv), "--objectives", "mcm,am", "--combiners", "sum",
            "--seeds", "1", "--epochs", "1", *TINY]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert main([*args, "--out", str(tmp_path / "serial")]) == 0
        torch.set_num_threads(2)  # each of the 2 processes gets one thread, as the serial runs had
        capsys.readouterr()
        assert main([*args, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "[mcm+am-sum, seed 0] training into" in out and "  [mcm+am-sum, seed 0] epoch 1:" in out  # workers' logs
    for run in ("mcm-sum-seed0", "mcm+am-sum-seed0"):
        metrics = [{k: v for k, v in json.loads((tmp_path / f / "runs" / run / "final.json").read_text()).items()
                    if "/" in k} for f in ("serial", "parallel")]
        assert metrics[0] == metrics[1] and "mcm/acc" in metrics[0]
    # a worker's error stops the experiment in one line: an unfinished run asked for with other settings
    (tmp_path / "parallel" / "runs" / "mcm-sum-seed0" / "final.json").unlink()
    assert main([*args, "--jobs", "2", "--lr", "0.01", "--out", str(tmp_path / "parallel")]) == 2
    err = capsys.readouterr().err
    assert "mcm-sum-seed0 holds a run trained with other settings (lr 0.001 there, 0.01 now)" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*args, "--jobs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--jobs 0: expected a positive number of processes" in capsys.readouterr().err


def test_code_provenance_counts_finished_runs_through_linked_folders_only(tmp_path):
    from relssl.experiments.report import code_provenance

    real = tmp_path / "elsewhere"
    for name, code in (("a-seed0", [source_digest()]), ("b-seed0", ["0123456789ab"])):
        (real / name).mkdir(parents=True)
        for file in ("config.yaml", "final.json"):
            (real / name / file).write_text("{}")
        (real / name / "data.json").write_text(json.dumps({"files": {}, "code": code}))
    out = tmp_path / "exp"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "config.yaml").write_text("{}")  # not a run folder
    (out / "runs").symlink_to(real)
    assert code_provenance(out) == (f"Code: 1 of 2 runs were trained by this command's relssl source "
                                    f"({source_digest()}); reused from earlier: 1 other code (`runs/b-seed0`). "
                                    f"Delete a run's folder to retrain it with this code.")
