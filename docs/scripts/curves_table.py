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


def number(value, spec: str = ".3f") -> str:
    """A table cell: '–' where a run has no such figure (no lr before schedules, no numerical column)."""
    return "–" if value is None else format(value, spec)


histories, metrics = {}, []  # run name -> its history; every run's accuracy metrics
for run in args.runs:
    history = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    val = {r["epoch"]: r for r in history if r["split"] == "val"}
    lr = {r["epoch"]: r.get("lr") for r in history if r["split"] == "train"}
    columns = sorted(k.split("/", 2)[2] for k in val[min(val)] if k.startswith("mcm/acc/"))
    run_metrics = ["mcm/acc", *(f"mcm/acc/{c}" for c in columns)]
    metrics = list(dict.fromkeys([*metrics, *run_metrics]))
    histories[Path(run).name] = history
    print(f"\n{run}\n")
    print("| epoch | lr | val MCM loss | ACC | " + " | ".join(columns) + " | RMSE |")
    print("|---" * (len(columns) + 5) + "|")
    for e in (e for e in epochs if e in val):
        r = val[e]
        print(f"| {e} | {number(lr[e], '.2g')} | {r['mcm/loss']:.3f} | " + " | ".join(number(r.get(m)) for m in run_metrics)
              + f" | {number(r.get('mcm/rmse'))} |")
    ref = val[min(val)]
    print("| ref | | | " + " | ".join(number(ref.get(m.replace("mcm/acc", "mcm/acc_ref"))) for m in run_metrics)
          + f" | {number(ref.get('mcm/rmse_ref'))} |")

if args.plot:  # the experiments' own plot: one panel per metric, a curve per run
    from relssl.experiments.report import plot_validation_curves

    plot_validation_curves({name: [{"history": h}] for name, h in histories.items()}, metrics, Path(args.plot),
                           "")
