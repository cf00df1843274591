"""The mask-type experiment: MCM, AM and MV under each mask type, mean ± std over seeds."""
from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from relssl.logs import info
from relssl.experiments.report import metric_table, plot_validation_curves, write_report
from relssl.experiments.runner import run_grid
from relssl.masking import MASK_TYPES
from relssl.train.pretrain import PretrainConfig

COLUMNS = {"mcm/acc": "MCM ACC", "mcm/rmse": "MCM RMSE", "mcm/emb_cos": "MCM emb cos", "mcm/emb_r1": "MCM emb R@1",
           "am/acc": "AM ACC", "am/rmse": "AM RMSE", "am/emb_cos": "AM emb cos", "am/emb_r1": "AM emb R@1",
           "mv/acc": "MV ACC"}
EMBEDDING_METRICS = ("emb_cos", "emb_r1")  # shown only for data with text/embedding columns


def run_mask_experiment(base: PretrainConfig, seeds: list[int], out: Path, command: list[str],
                        progress: bool = True, log=info, jobs: int = 1) -> Path:
    """One run per mask type and seed with ``base.objectives`` trained together; writes
    out/report.md and out/curves.png."""
    out.mkdir(parents=True, exist_ok=True)
    configs = {mask: replace(base, mask=mask) for mask in MASK_TYPES}
    results = run_grid(configs, seeds, out, progress, log, jobs)
    reported = {k for runs in results.values() for r in runs for k in r["final"]}
    columns = {k: v for k, v in COLUMNS.items() if k.split("/")[0] in base.objectives
               and (not k.endswith(EMBEDDING_METRICS) or k in reported)}
    emb_note = (" emb cos: mean cosine of the predicted and true vectors of masked text/embedding cells; "
                "emb R@1: the true vector is the nearest of the batch's true vectors of that column."
                if any(k.endswith(EMBEDDING_METRICS) for k in columns) else "")
    table = metric_table(results, columns, "mask type")
    report = [
        f"# Mask types on `{base.data}`",
        "",
        f"Regenerate with: `{shlex.join(command)}`",
        "",
        f"Objectives trained together: {', '.join(base.objectives)}; {base.epochs} epochs"
        f"{f', {base.train_rows_per_epoch:,} training rows per epoch' if base.train_rows_per_epoch else ''}; "
        f"seeds {', '.join(map(str, seeds))}. Test split (temporal), best-validation epoch; "
        f"mean ± std over seeds; best in bold. RMSE is on standardised values (training statistics). "
        f"MV ACC is per-cell accuracy of predicting which cells were masked.{emb_note} "
        f"ref: the trivial reference on the same cells (a category: the best guess from what the input "
        f"shows, so under replace the most frequent category other than the shown one; a number: the "
        f"training mean; MV: all unchanged).",
        "",
        table,
        "",
        "Validation curves: [curves.png](curves.png). Run folders: `runs/`.",
        "",
    ]
    path = write_report(out, report)
    plot_validation_curves(results, list(columns), out / "curves.png", f"{base.data}: mask types")
    return path
