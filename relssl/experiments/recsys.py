"""The recommendation experiment: MMSSL, its ablations and the ID-only baselines over seeds on one
dataset; finished runs are reused, so an interrupted experiment continues where it stopped."""
from __future__ import annotations

import itertools
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np

from relssl.logs import info
from relssl.experiments.report import (chosen_on_validation, mean_std, metric_table, plot_validation_curves,
                                      write_report)
from relssl.experiments.parallel import train_unfinished
from relssl.experiments.runner import reuse_or_train
from relssl.recsys.datasets import load_recsys_data
from relssl.recsys.train import RecConfig, train_recsys

VARIANTS = {
    "mmssl": {"model": "mmssl"},
    "mmssl-noadv": {"model": "mmssl", "adversarial": False},
    "mmssl-nocl": {"model": "mmssl", "contrastive": False},
    "lightgcn": {"model": "lightgcn"},
    "bprmf": {"model": "bprmf"},
}
COLUMNS = {f"{m}@{k}": f"{title}@{k}" for m, title in (("recall", "Recall"), ("precision", "Precision"),
                                                         ("ndcg", "NDCG")) for k in (10, 20)}


def sweep_variants(sweep: dict[str, list[float]]) -> dict[str, dict]:
    """MMSSL at every combination of the swept settings, e.g. {"adv_weight": [1e-3, 1e-2]} ->
    {"mmssl-adv_weight=0.001": {...}, "mmssl-adv_weight=0.01": {...}}."""
    variants = {}
    for values in itertools.product(*sweep.values()):
        setting = dict(zip(sweep, values))
        label = "mmssl-" + "-".join(f"{k}={v:g}" for k, v in setting.items())
        variants[label] = {"model": "mmssl", **setting}
    return variants


def resolved_keys(cfg: RecConfig) -> tuple[str, ...]:
    """Settings a recommendation run stores resolved: ``modalities: auto`` as the ones it used."""
    return ("modalities",) if cfg.modalities == "auto" else ()


def train_recsys_run(run: Path, wanted: RecConfig, label: str) -> None:
    """One run in a worker process (``--jobs``), reading the data itself."""
    data = load_recsys_data(wanted.data, wanted.interactions, wanted.positive)
    reuse_or_train(run, wanted, lambda resume: train_recsys(wanted, run, data, False, resume=resume,
                                                            log=lambda msg: info(f"  [{label}] {msg}")),
                   label, resolved=resolved_keys(wanted))


def run_recsys_experiment(base: RecConfig, seeds: list[int], variants: list[str], out: Path, command: list[str],
                          progress: bool = False, log=info, sweep: dict[str, list[float]] | None = None,
                          jobs: int = 1) -> Path:
    """One run per variant and seed, plus MMSSL at each setting of ``sweep`` (and without its
    adversarial part, to compare with the best setting); writes out/report.md and out/curves.png.
    ``jobs`` > 1: the unfinished runs train that many at a time first (relssl.experiments.parallel)."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_recsys_data(base.data, base.interactions, base.positive)
    swept = sweep_variants(sweep) if sweep else {}
    settings = {**VARIANTS, **swept}
    if swept and "mmssl-noadv" not in variants:
        variants = [*variants, "mmssl-noadv"]
    grid = [(label, seed, out / "runs" / f"{label}-seed{seed}", replace(base, seed=seed, **settings[label]))
            for label in [*variants, *swept] for seed in seeds]
    if jobs > 1:
        train_unfinished(jobs, train_recsys_run, [(f"{label}, seed {seed}", run, wanted)
                                                  for label, seed, run, wanted in grid])
    results: dict[str, list[dict]] = {label: [] for label, *_ in grid}
    for label, seed, run, wanted in grid:
        record = reuse_or_train(
            run, wanted,
            lambda resume: train_recsys(wanted, run, data, progress, log=lambda msg: log(f"  {msg}"), resume=resume),
            f"{label}, seed {seed}", log, resolved=resolved_keys(wanted))
        results[label].append({"seed": seed, **record})
    counts = data.counts()
    features = "; ".join(f"{label}: {runs[0]['final']['modalities'].replace(',', ', ')}"
                         for label, runs in results.items())
    report = [
        f"# Recommendation on `{data.name}`",
        "",
        f"Regenerate with: `{shlex.join(command)}`",
        "",
        f"{data.n_users:,} users, {data.n_items:,} items, {counts['train']:,}/{counts['val']:,}/{counts['test']:,} "
        f"train/val/test interactions. Up to {base.epochs} epochs (early stopping on validation Recall@20, "
        f"patience {base.patience}), batch {base.batch_size} users, lr {base.lr}, embedding size {base.dim}; "
        f"seeds {', '.join(map(str, seeds))}. Test split, full ranking over all items with training and "
        f"validation items excluded, best-validation epoch; mean ± std over seeds; best in bold.",
        "",
        f"Item features used: {features}.",
        "",
        metric_table(results, COLUMNS, "model", digits=4),
        "",
        *([sweep_verdict(results, list(swept), sweep), ""] if swept else []),
        cost_table(results),
        "",
        "Validation curves: [curves.png](curves.png). Run folders: `runs/`.",
        "",
    ]
    path = write_report(out, report)
    plot_validation_curves(results, ["recall@20", "ndcg@20"], out / "curves.png", f"{data.name}: recommenders")
    return path


def cost_table(results: dict[str, list[dict]]) -> str:
    """Seconds per training epoch (mean over epochs and seeds) and the best epochs."""
    lines = ["| model | s / epoch | best epoch per seed |", "|---|---|---|"]
    for label, runs in results.items():
        seconds = [r["seconds"] for run in runs for r in run["history"] if r["split"] == "train"]
        best = ", ".join(str(run["final"]["best_epoch"]) for run in runs)
        lines.append(f"| {label} | {np.mean(seconds):.1f} | {best} |")
    return "\n".join(lines)


def sweep_verdict(results: dict[str, list[dict]], swept: list[str], sweep: dict[str, list[float]]) -> str:
    """Does MMSSL's adversarial part help at its best swept setting? Test Recall@20 of the setting
    chosen on validation against MMSSL without it, beyond the larger seed std or not."""
    best = chosen_on_validation(results, swept, "recall@20")
    a, b = ([r["final"]["recall@20"] for r in results[label]] for label in (best, "mmssl-noadv"))
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    diff, noise = mean_a - mean_b, max(std_a, std_b)
    grid = "; ".join(f"{k} in {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in sweep.items())
    beyond = "within" if abs(diff) <= noise else "beyond"
    return (f"**Adversarial part at its best setting.** Swept {grid}; chosen on validation Recall@20: `{best}`. "
            f"Its test Recall@20 minus MMSSL without the adversarial part: {diff:+.4f} ({beyond} seed noise, "
            f"{len(a)} seed{'s' if len(a) > 1 else ''}).")
