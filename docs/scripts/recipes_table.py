"""One table from several `relssl experiment downstream` folders that differ only in the pre-training
recipe: each recipe's pretrained rows (probe, fine-tune), and once the rows that do not depend on
pre-training (scratch, trees, trivial reference; taken from the first folder: the same seeds give
the same runs in every folder, which this checks).

    python docs/scripts/recipes_table.py RECIPE=DIR [RECIPE=DIR ...]
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

NAMES = {"gbdt": "GBDT on raw features", "gbdt-graph": "GBDT on raw + graph features",
         "scratch": "scratch + finetune", "reference": "trivial reference",
         "probe": "pretrained + probe", "finetune": "pretrained + finetune"}
PRETRAINED = ("probe", "finetune")
METRICS = ("test/f1", "test/pr_auc", "test/roc_auc")


def finals(folder: Path) -> dict[tuple[str, float], list[dict]]:
    """(method, label fraction) -> the final.json of each seed's run (causal protocol)."""
    runs = defaultdict(list)
    for path in sorted((folder / "downstream").glob("*/final.json")):
        method, fraction, _ = path.parent.name.rsplit("-", 2)
        runs[(method, float(fraction[1:]))].append(json.loads(path.read_text()))
    return runs


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main(pairs: list[str]) -> None:
    recipes = {name: finals(Path(folder)) for name, folder in (pair.split("=", 1) for pair in pairs)}
    first = next(iter(recipes.values()))
    for name, runs in recipes.items():  # the runs that ignore pre-training must agree across folders
        for key, found in runs.items():
            if key[0] not in PRETRAINED and key in first:
                same = [a["test/f1"] == b["test/f1"] for a, b in zip(found, first[key])]
                if not all(same):
                    sys.exit(f"{name}: {key[0]} at {key[1]:g} differs from the first folder's; not the same seeds")
    print("| labels | method | recipe | seeds | F1 | PR-AUC | ROC-AUC |\n|---|---|---|---|---|---|---|")
    for fraction in sorted({f for _, f in first}):
        rows = [(NAMES[m], "–", first[(m, fraction)]) for m in ("reference", "gbdt", "gbdt-graph", "scratch")
                if (m, fraction) in first]
        rows += [(NAMES[m], name, runs[(m, fraction)]) for m in PRETRAINED for name, runs in recipes.items()
                 if (m, fraction) in runs]
        for method, recipe, found in rows:
            values = " | ".join(cell([r[k] for r in found]) for k in METRICS)
            print(f"| {fraction * 100:g} % | {method} | {recipe} | {len(found)} | {values} |")


if __name__ == "__main__":
    main(sys.argv[1:])
