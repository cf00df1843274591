"""Objective subsets × combiners: which combination of pretext tasks learns best, and does MoCo
make the result less sensitive to the choice of subset?"""
from __future__ import annotations

import itertools
import math
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np

from relssl.logs import info
from relssl.multitask import COMBINERS
from relssl.objectives import reference_key
from relssl.experiments.report import chosen_on_validation, plot_validation_curves, values_table, write_report
from relssl.experiments.runner import run_grid
from relssl.train.pretrain import PretrainConfig

TASKS = ("mcm", "mv", "am", "lp")
METRICS = {"mcm/acc": "ACC", "mcm/rmse": "RMSE", "lp/mrr": "MRR"}
# "tuned": a static weighted sum, MCM weighing 1 and every other task of the subset one weight w from
# this grid, w chosen per subset on the mean validation MCM loss over seeds. The literature's
# baseline for any adaptive combiner (Kurin et al. 2022; Xin et al. 2022): a tuned sum is hard to beat.
TUNED_WEIGHTS = (0.1, 0.3, 1.0, 3.0)


def tuned_labels(subset: tuple[str, ...]) -> dict[str, float]:
    """Run label -> w of the "tuned" grid of ``subset``. w = 1 is the plain sum, whose runs it shares
    (a weighted sum with every weight 1 is the sum's run bit for bit)."""
    return {f"{'+'.join(subset)}-{'sum' if w == 1 else f'w{w:g}'}": w
            for w in (TUNED_WEIGHTS if len(subset) > 1 else (1.0,))}


def trained_combiner(subset: tuple[str, ...], combiner: str) -> str:
    """The combiner a (non-"tuned") run trains with: a lone task under a combiner that reduces to the
    sum shares the sum's run, as it would train the same model bit for bit."""
    return "sum" if len(subset) == 1 and COMBINERS[combiner].one_task_is_sum else combiner


def run_label(subset: tuple[str, ...], combiner: str) -> str:
    return f"{'+'.join(subset)}-{trained_combiner(subset, combiner)}"


def grid_configs(base: PretrainConfig, subsets, combiners: list[str]) -> dict[str, PretrainConfig]:
    """Run label -> config: one per subset and combiner (shared where they are the same model), and
    per weight of the "tuned" grid."""
    configs = {}
    for s in subsets:
        for c in combiners:
            if c != "tuned":
                configs[run_label(s, c)] = replace(base, objectives=list(s), combiner=trained_combiner(s, c))
                continue
            for label, w in tuned_labels(s).items():
                configs[label] = replace(base, objectives=list(s), combiner="sum") if w == 1 else replace(
                    base, objectives=list(s), combiner="weighted", weights=[1.0] + [w] * (len(s) - 1))
    return configs


def chosen_runs(results: dict[str, list[dict]], subsets, combiners: list[str]) -> dict[tuple, str]:
    """(subset, combiner) -> the run label reported: for "tuned", the weight with the lowest mean
    validation MCM loss."""
    return {(s, c): chosen_on_validation(results, list(tuned_labels(s)), "mcm/loss") if c == "tuned"
            else run_label(s, c) for s in subsets for c in combiners}


def subsets_with_mcm(tasks=TASKS) -> list[tuple[str, ...]]:
    others = [t for t in tasks if t != "mcm"]
    return [("mcm", *c) for k in range(len(others) + 1) for c in itertools.combinations(others, k)]


def spread_across_subsets(results: dict[str, list[dict]], labels: list[str], metric: str) -> float:
    """Standard deviation, across subsets, of the subsets' mean metric (NaN if fewer than two)."""
    means = [np.mean([r["final"][metric] for r in results[label]]) for label in labels
             if all(metric in r["final"] for r in results[label])]
    return float(np.std(means, ddof=1)) if len(means) > 1 else math.nan


def run_combo_experiment(base: PretrainConfig, combiners: list[str], seeds: list[int], out: Path,
                         command: list[str], tasks=TASKS, progress: bool = True, log=info, jobs: int = 1) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    subsets = subsets_with_mcm(tasks)
    results = run_grid(grid_configs(base, subsets, combiners), seeds, out, progress, log, jobs)
    chosen = chosen_runs(results, subsets, combiners)

    values, columns, reference = {}, {}, {}
    for s in subsets:
        row = "+".join(t.upper() for t in s)
        values[row] = {}
        for c in combiners:
            for metric, title in METRICS.items():
                key = f"{c}:{metric}"
                columns[key] = f"{c} {title}"
                runs = results[chosen[s, c]]
                values[row][key] = [r["final"][metric] for r in runs if metric in r["final"]]
                reference.setdefault(key, []).extend(r["final"][reference_key(metric)] for r in runs
                                                     if reference_key(metric) in r["final"])
    table = values_table(values, columns, "objectives", reference=reference)

    spread = ["| metric | " + " | ".join(f"std across subsets ({c})" for c in combiners)
              + (f" | change {combiners[1]} vs {combiners[0]} |" if len(combiners) > 1 else " |"),
              "|---|" + "---|" * (len(combiners) + (len(combiners) > 1))]
    for metric, title in METRICS.items():
        stds = [spread_across_subsets(results, [chosen[s, c] for s in subsets], metric) for c in combiners]
        cells = [f"{v:.4f}" if not math.isnan(v) else "–" for v in stds]
        if len(combiners) > 1:
            change = (stds[1] - stds[0]) / stds[0] * 100 if stds[0] and not math.isnan(stds[0] + stds[1]) else math.nan
            cells.append(f"{change:+.0f} %" if not math.isnan(change) else "–")
        spread.append(f"| {title} | " + " | ".join(cells) + " |")

    tuned_choice = ", ".join(f"{'+'.join(t.upper() for t in s)} {tuned_labels(s)[chosen[s, 'tuned']]:g}"
                             for s in subsets if len(s) > 1 and "tuned" in combiners)
    shared = [c for c in combiners if c not in ("sum", "tuned") and COMBINERS[c].one_task_is_sum]
    report = [
        f"# Objective subsets × combiners on `{base.data}`",
        "",
        f"Regenerate with: `{shlex.join(command)}`",
        "",
        f"Every subset of {{{', '.join(t.upper() for t in tasks)}}} that contains MCM, trained with each combiner "
        f"({', '.join(combiners)}); mask type {base.mask}; {base.epochs} epochs"
        f"{f', {base.train_rows_per_epoch:,} training rows per epoch' if base.train_rows_per_epoch else ''}; "
        f"seeds {', '.join(map(str, seeds))}. Test split, best-validation epoch, mean ± std over seeds; best in "
        f"bold. ACC and RMSE are MCM's (categorical accuracy, standardised RMSE); MRR is LP's where LP is trained."
        + (f" tuned: a static weighted sum, MCM 1 and the subset's other tasks one weight w from "
           f"{{{', '.join(f'{w:g}' for w in TUNED_WEIGHTS)}}}, chosen per subset on the mean validation MCM loss "
           f"(chosen w: {tuned_choice})."
           if tuned_choice else "")
        + (f" MCM alone under {', '.join(shared)} is the sum's run: with one task "
           f"{'they are' if len(shared) > 1 else 'it is'} the sum bit for bit." if shared else ""),
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
    path = write_report(out, report)
    groups = {c: {chosen[s, c]: "+".join(t.upper() for t in s) for s in subsets} for c in combiners}
    plot_validation_curves(results, ["mcm/acc", "mcm/rmse", "lp/mrr"], out / "curves.png",
                           f"{base.data}: objective subsets per combiner", groups)
    return path
