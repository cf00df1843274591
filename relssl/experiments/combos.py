"""Objective subsets × combiners: which combination of pretext tasks learns best, and does MoCo
make the result less sensitive to the choice of subset?"""
from __future__ import annotations

import itertools
import math
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np

from relssl.eval.plots import reference_key
from relssl.experiments.report import plot_validation_curves, values_table
from relssl.experiments.runner import run_grid
from relssl.train.pretrain import PretrainConfig

TASKS = ("mcm", "mv", "am", "lp")
METRICS = {"mcm/acc": "ACC", "mcm/rmse": "RMSE", "lp/mrr": "MRR"}


def subsets_with_mcm(tasks=TASKS) -> list[tuple[str, ...]]:
    others = [t for t in tasks if t != "mcm"]
    return [("mcm", *c) for k in range(len(others) + 1) for c in itertools.combinations(others, k)]


def spread_across_subsets(results: dict[str, list[dict]], labels: list[str], metric: str) -> float:
    """Standard deviation, across subsets, of the subsets' mean metric (NaN if fewer than two)."""
    means = [np.mean([r["final"][metric] for r in results[label]]) for label in labels
             if all(metric in r["final"] for r in results[label])]
    return float(np.std(means, ddof=1)) if len(means) > 1 else math.nan


def run_combo_experiment(base: PretrainConfig, combiners: list[str], seeds: list[int], out: Path,
                         command: list[str], tasks=TASKS, progress: bool = True, log=print) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    subsets = subsets_with_mcm(tasks)
    configs = {f"{'+'.join(s)}-{c}": replace(base, objectives=list(s), combiner=c) for s in subsets for c in combiners}
    results = run_grid(configs, seeds, out, progress, log)

    values, columns, reference = {}, {}, {}
    for s in subsets:
        row = "+".join(t.upper() for t in s)
        values[row] = {}
        for c in combiners:
            for metric, title in METRICS.items():
                key = f"{c}:{metric}"
                columns[key] = f"{c} {title}"
                runs = results[f"{'+'.join(s)}-{c}"]
                values[row][key] = [r["final"][metric] for r in runs if metric in r["final"]]
                reference.setdefault(key, []).extend(r["final"][reference_key(metric)] for r in runs
                                                     if reference_key(metric) in r["final"])
    table = values_table(values, columns, "objectives", reference=reference)

    spread = ["| metric | " + " | ".join(f"std across subsets ({c})" for c in combiners)
              + (f" | change {combiners[1]} vs {combiners[0]} |" if len(combiners) > 1 else " |"),
              "|---|" + "---|" * (len(combiners) + (len(combiners) > 1))]
    for metric, title in METRICS.items():
        stds = [spread_across_subsets(results, [f"{'+'.join(s)}-{c}" for s in subsets], metric) for c in combiners]
        cells = [f"{v:.4f}" if not math.isnan(v) else "–" for v in stds]
        if len(combiners) > 1:
            change = (stds[1] - stds[0]) / stds[0] * 100 if stds[0] and not math.isnan(stds[0] + stds[1]) else math.nan
            cells.append(f"{change:+.0f} %" if not math.isnan(change) else "–")
        spread.append(f"| {title} | " + " | ".join(cells) + " |")

    report = [
        f"# Objective subsets × combiners on `{base.data}`",
        "",
        f"Regenerate with: `{shlex.join(command)}`",
        "",
        f"Every subset of {{{', '.join(t.upper() for t in tasks)}}} that contains MCM, trained with each combiner "
        f"({', '.join(combiners)}); mask type {base.mask}; {base.epochs} epochs"
        f"{f', {base.train_rows_per_epoch:,} training rows per epoch' if base.train_rows_per_epoch else ''}; "
        f"seeds {', '.join(map(str, seeds))}. Test split, best-validation epoch, mean ± std over seeds; best in "
        f"bold. ACC and RMSE are MCM's (categorical accuracy, standardised RMSE); MRR is LP's where LP is trained.",
        "",
        table,
        "",
        "## Sensitivity to the choice of subset",
        "",
        "Standard deviation across subsets of the subset means (lower: the combiner makes the result depend "
        "less on which tasks are combined).",
        "",
        *spread,
        "",
        "Validation curves per subset and combiner: [curves.png](curves.png). Run folders: `runs/`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(report))
    groups = {c: {f"{'+'.join(s)}-{c}": "+".join(t.upper() for t in s) for s in subsets} for c in combiners}
    plot_validation_curves(results, ["mcm/acc", "mcm/rmse", "lp/mrr"], out / "curves.png",
                           f"{base.data}: objective subsets per combiner", groups)
    return path
