"""Markdown tables of mean ± std over seeds (best in bold), validation-curve plots, and the
report file itself with the code that trained its runs."""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from relssl.files import write_text
from relssl.objectives import metric_index, reference_key
from relssl.train.plots import pyplot
from relssl.train.run_folder import CONFIG, FINAL, RunFolder
from relssl.version import source_digest

LOWER_IS_BETTER = ("rmse", "mae", "loss", "mpr")


def higher_is_better(metric: str) -> bool:
    """From the metric's name: ``mcm/rmse`` and ``mcm/rmse/<column>`` are lower-is-better."""
    return not metric.split("/")[metric_index(metric)].startswith(LOWER_IS_BETTER)


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(vals) == 0:
        return math.nan, math.nan
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def validation_at_best(run: dict, metric: str) -> float:
    """``metric`` on the validation split at the run's best epoch (what early stopping kept)."""
    best = run["final"]["best_epoch"]
    return next(r[metric] for r in run["history"] if r["split"] == "val" and r["epoch"] == best)


def chosen_on_validation(results: dict[str, list[dict]], labels: list[str], metric: str) -> str:
    """Of ``labels``, the one whose runs have the best mean validation ``metric`` at their best
    epochs: how an experiment picks a setting without looking at the test split."""
    pick = max if higher_is_better(metric) else min
    return pick(labels, key=lambda label: float(np.mean([validation_at_best(r, metric) for r in results[label]])))


def values_table(values: dict[str, dict[str, list[float]]], columns: dict[str, str], row_header: str,
                 digits: int = 3, reference: dict[str, list[float]] | None = None, plain: set[str] = frozenset()) -> str:
    """``values[row][metric]`` = per-seed values. Each cell is mean ± std over seeds; the best mean of
    each column is bold (direction from the metric name), except in ``plain`` columns; ``columns``
    maps metric key -> title. ``reference[metric]``, when given, is a last row: the metrics'
    trivial references, never bold."""
    stats = {row: {m: mean_std(vals.get(m, [])) for m in columns} for row, vals in values.items()}
    best = {}
    for m in columns:
        if m in plain:
            continue
        means = [s[m][0] for s in stats.values() if not math.isnan(s[m][0])]
        if means:
            best[m] = (max if higher_is_better(m) else min)(means)
    lines = [f"| {row_header} | " + " | ".join(columns.values()) + " |",
             "|---|" + "---|" * len(columns)]
    for row, s in stats.items():
        cells = []
        for m in columns:
            mean, std = s[m]
            if math.isnan(mean):
                cells.append("–")
                continue
            text = f"{mean:.{digits}f} ± {std:.{digits}f}"
            cells.append(f"**{text}**" if best.get(m) == mean else text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if reference and any(reference.get(m) for m in columns):
        cells = []
        for m in columns:
            mean, std = mean_std(reference.get(m, []))
            cells.append("–" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}")
        lines.append("| trivial reference | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(results: dict[str, list[dict]], columns: dict[str, str], row_header: str,
                 digits: int = 3) -> str:
    """Rows = labels of ``results`` (runs over seeds, each with its final.json as "final"); beside
    each metric that has a trivial reference, that reference on the row's own runs ("ref", never
    bold): a reference can depend on the row's setting (the categorical one on the mask type)."""
    shown, plain = {}, set()
    for m, title in columns.items():
        shown[m] = title
        if any(reference_key(m) in r["final"] for runs in results.values() for r in runs):
            shown[reference_key(m)] = f"{title} ref"
            plain.add(reference_key(m))
    values = {label: {m: [r["final"].get(m, math.nan) for r in runs] for m in shown}
              for label, runs in results.items()}
    return values_table(values, shown, row_header, digits, plain=plain)


def plot_validation_curves(results: dict[str, list[dict]], metrics: list[str], path: Path, title: str,
                           groups: dict[str, dict[str, str]] | None = None) -> None:
    """Validation curves, mean over seeds (band: ± std). One panel per metric and group; a group
    maps run labels to legend names (default: one group with every label)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    groups = groups or {"": {label: label for label in results}}
    metrics = [m for m in metrics if any(m in r for runs in results.values() for run in runs for r in run["history"])]
    if not metrics:
        return
    fig, axes = plt.subplots(len(metrics), len(groups), figsize=(4.8 * len(groups), 3.4 * len(metrics)),
                             squeeze=False)
    for row, metric in enumerate(metrics):
        for col, (group, members) in enumerate(groups.items()):
            ax = axes[row][col]
            for label, name in members.items():
                curves = {}
                for run in results[label]:
                    for rec in run["history"]:
                        if rec["split"] == "val" and metric in rec:
                            curves.setdefault(rec["epoch"], []).append(rec[metric])
                if not curves:
                    continue
                epochs = sorted(curves)
                mean = np.array([np.mean(curves[e]) for e in epochs])
                std = np.array([np.std(curves[e]) for e in epochs])
                ax.plot(epochs, mean, "-o", markersize=3, label=name)
                ax.fill_between(epochs, mean - std, mean + std, alpha=0.15)
            ax.set_title(f"{group + ': ' if group else ''}validation {metric}")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.lines:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def code_provenance(out: Path) -> str:
    """Which relssl source trained the run folders under ``out`` (each folder's data.json): an
    experiment reuses finished runs whatever code trained them, so a report says when it holds
    numbers from other code than the command's own."""
    now = source_digest()
    # finished runs (config.yaml and final.json), through linked folders too
    folders = sorted(Path(top) for top, _, files in os.walk(out, followlinks=True) if {CONFIG, FINAL} <= set(files))
    codes = {folder: RunFolder(folder, writer=False).code() for folder in folders}
    other = [folder for folder, code in codes.items() if code != [now]]
    if not other:
        return f"Code: every run ({len(folders)}) was trained by this command's relssl source ({now})."
    kinds = Counter("not recorded" if not codes[f] else "partly this code" if now in codes[f] else "other code"
                    for f in other)
    named = ", ".join(f"`{f.relative_to(out)}`" for f in other[:5]) + (", ..." if len(other) > 5 else "")
    return (f"Code: {len(folders) - len(other)} of {len(folders)} runs were trained by this command's relssl "
            f"source ({now}); reused from earlier: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))} "
            f"({named}). Delete a run's folder to retrain it with this code.")


def write_report(out: Path, lines: list[str]) -> Path:
    """out/report.md: ``lines``, then the code provenance of the runs under ``out``; written atomically."""
    path = out / "report.md"
    write_text(path, "\n".join([*lines, code_provenance(out), ""]))
    return path
