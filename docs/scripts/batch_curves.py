"""Validation curves of pre-training runs that differ in batch size (and learning rate), against the
training rows they have seen and against the time those rows take on a GPU at each batch size's
measured rate. Prints a markdown table of the last epoch's validation metrics.
Usage: python docs/scripts/batch_curves.py OUT.png RATES RUN [RUN ...]
RATES: BATCH=ROWS_PER_S pairs, e.g. 512=8856,4096=53363,16384=87211 (relssl bench --loop's figures)."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

METRICS = {"mcm/acc": "MCM accuracy", "mcm/rmse": "MCM RMSE", "lp/mrr": "LP MRR"}

out, rates, runs = Path(sys.argv[1]), dict(p.split("=") for p in sys.argv[2].split(",")), sys.argv[3:]
fig, axes = plt.subplots(2, len(METRICS), figsize=(4.6 * len(METRICS), 6.6), squeeze=False)
print("| batch | lr | updates | rows seen | GPU seconds | " + " | ".join(f"val {t}" for t in METRICS.values()) + " |")
print("|---|---|---|---|---|" + "---|" * len(METRICS))
for run in runs:
    cfg = yaml.safe_load((Path(run) / "config.yaml").read_text())
    batch, lr, per_epoch = cfg["batch_size"], cfg["lr"], cfg["train_rows_per_epoch"]
    val = [r for r in map(json.loads, (Path(run) / "metrics.jsonl").read_text().splitlines()) if r["split"] == "val"]
    seen = [r["epoch"] * per_epoch for r in val]
    seconds = [s / float(rates[str(batch)]) for s in seen]
    label = f"batch {batch}, lr {lr:g}"
    for col, metric in enumerate(METRICS):
        for row, x in enumerate((seen, seconds)):
            axes[row][col].plot(x, [r[metric] for r in val], "-o", markersize=2, label=label)
    last = val[-1]
    updates = last["epoch"] * -(-per_epoch // batch)
    print(f"| {batch:,} | {lr:g} | {updates:,} | {seen[-1]:,} | {seconds[-1]:.0f} | "
          + " | ".join(f"{last[m]:.3f}" for m in METRICS) + " |")
print("| reference (last run's rows) | | | | | " + " | ".join(
    f"{last[m + '_ref']:.3f}" if m + "_ref" in last else "" for m in METRICS) + " |")
for col, (metric, title) in enumerate(METRICS.items()):
    axes[0][col].set(title=f"validation {title}", xlabel="training rows seen")
    axes[1][col].set(title=f"validation {title}", xlabel="seconds on the H200 at each batch's rows/s")
    for row in (0, 1):
        axes[row][col].legend(fontsize=7)
fig.tight_layout()
fig.savefig(out, dpi=100)
