"""Validation curves of MCM pre-training runs as markdown tables, per-column accuracy included
(curves.png plots only the summed metrics); with --plot, every run's validation accuracy, overall
and per column, against epoch in one figure. Usage:
python docs/scripts/curves_table.py RUN [RUN ...] [--epochs 5,15,30,45,60] [--plot PNG]"""
import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("runs", nargs="+")
parser.add_argument("--epochs", default="5,15,30,45,60")
parser.add_argument("--plot", help="also draw every run's validation accuracy curves here")
args = parser.parse_args()
epochs = [int(e) for e in args.epochs.split(",")]

curves = {}  # run -> metric -> [(epoch, value)]
for run in args.runs:
    history = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    val = {r["epoch"]: r for r in history if r["split"] == "val"}
    lr = {r["epoch"]: r.get("lr") for r in history if r["split"] == "train"}
    columns = sorted(k.split("/", 2)[2] for k in val[min(val)] if k.startswith("mcm/acc/"))
    metrics = ["mcm/acc", *(f"mcm/acc/{c}" for c in columns)]
    curves[Path(run).name] = {m: [(e, val[e][m]) for e in sorted(val)] for m in metrics}
    print(f"\n{run}\n")
    print("| epoch | lr | val MCM loss | ACC | " + " | ".join(columns) + " | RMSE |")
    print("|---" * (len(columns) + 5) + "|")
    for e in (e for e in epochs if e in val):
        r = val[e]
        print(f"| {e} | {lr[e]:.2g} | {r['mcm/loss']:.3f} | " + " | ".join(f"{r[m]:.3f}" for m in metrics)
              + f" | {r['mcm/rmse']:.3f} |")
    ref = val[min(val)]
    print("| ref | | | " + " | ".join(f"{ref[m.replace('mcm/acc', 'mcm/acc_ref')]:.3f}" for m in metrics)
          + f" | {ref['mcm/rmse_ref']:.3f} |")

if args.plot:
    from relssl.train.plots import pyplot

    plt = pyplot()
    metrics = list(next(iter(curves.values())))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for name, run in curves.items():
            ax.plot(*zip(*run[metric]), label=name)
        ax.set_title(f"val {metric}")
        ax.set_xlabel("epoch")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
