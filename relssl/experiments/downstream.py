"""The downstream experiment: does pre-training help a labelled task, and at which label budgets?

For every label fraction and seed, on the same labelled sets, the AML literature's ladder:
gradient-boosted trees on raw features, trees on raw plus causal graph features, the backbone
trained from scratch, a linear probe on the pre-trained backbone, and the pre-trained backbone
fine-tuned. The three backbone methods run under each asked-for evaluation protocol (causal: a row
sees only events at or before its time; transductive: its split's whole graph, as Multi-GNN
evaluates). Several pre-training recipes (objectives, combiner, weights) share one experiment: the
pre-trained methods run once per recipe (DIR/downstream/RECIPE/), the others once, on the same
labelled sets. Pre-training runs (DIR/runs) and downstream runs (DIR/downstream) are reused when
finished, so an interrupted experiment continues where it stopped. The verdict and ladder sentences
are computed from the table's numbers.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np

from relssl.errors import RelsslError
from relssl.logs import info
from relssl.data.database import Database
from relssl.data.datasets import load_dataset
from relssl.experiments.report import higher_is_better, mean_std, write_report
from relssl.experiments.runner import reuse_or_train, run_grid
from relssl.eval.finetune import GBDT_MODES, FinetuneConfig, finetune, prepare_for
from relssl.train.plots import pyplot
from relssl.train.pretrain import PretrainConfig

# method -> (init from the pre-trained run?, finetune mode, report name)
METHODS = {"gbdt": (False, "gbdt", "GBDT on raw features"),
           "gbdt-graph": (False, "gbdt-graph", "GBDT on raw + graph features"),
           "scratch": (False, "finetune", "scratch + finetune"),
           "probe": (True, "probe", "pretrained + probe"), "finetune": (True, "finetune", "pretrained + finetune"),
           "reference": (False, "reference", "trivial reference")}
# The trivial reference's report name, per task kind (relssl.eval.finetune.Finetuner.run_reference).
REFERENCE_NAMES = {"binary": "trivial reference (training positive rate)",
                   "multiclass": "trivial reference (training class shares: the majority class)",
                   "regression": "trivial reference (training mean)"}
BACKBONE_METHODS = ("scratch", "probe", "finetune")  # these sample neighbourhoods: the protocol applies
COLUMNS = {"binary": {"test/f1": "F1", "test/pr_auc": "PR-AUC", "test/roc_auc": "ROC-AUC", "threshold": "threshold"},
           "multiclass": {"test/macro_f1": "macro-F1", "test/accuracy": "accuracy"},
           "regression": {"test/rmse": "RMSE", "test/mae": "MAE"}}
SELECTED_ON = {"binary": "PR-AUC", "multiclass": "macro-F1", "regression": "RMSE"}


def percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def method_rows(protocols: list[str], event_graph: bool = True, entity_task: bool = False,
                links: bool = True) -> dict[str, tuple[str, str, str]]:
    """Table row key -> (method, protocol, report name). Causal rows keep the bare method key (and
    run folder name); the trees' graph features are causal whatever the protocol. Without an event
    graph (a database of several tables) there are no graph features for the trees, whose raw
    features are the flattened row, or for an entity task the entity's row and its links' counts
    (relssl.eval.baseline.cutoff_matrix); events without keys (``links`` False, one wide table)
    have none either."""
    rows = {}
    for method, (_, _, name) in METHODS.items():
        if method == "gbdt-graph" and not (event_graph and links):
            continue
        if method == "gbdt" and not event_graph:  # the row's cells and those of the rows it references
            name = "GBDT on recency and frequency" if entity_task else "GBDT on the flattened row"
        for protocol in protocols if method in BACKBONE_METHODS else ["causal"]:
            key = method if protocol == "causal" else f"{method}-{protocol}"
            rows[key] = (method, protocol, name if protocol == "causal" else f"{name}, {protocol}")
    return rows


# A recipe's settings, which the methods without pre-training do not read: their runs are reused
# whichever recipes share the experiment.
RECIPE_KEYS = ("objectives", "combiner", "weights", "combiner_options", "objective_options")


def recipe_label(cfg: PretrainConfig) -> str:
    """A pre-training recipe's folder label: its objectives, and its combiner unless the plain sum."""
    return "-".join(["+".join(cfg.objectives), *([cfg.combiner] if cfg.combiner != "sum" else []),
                     *([",".join(f"{w:.10g}" for w in cfg.weights)] if cfg.weights else [])])


def recipe_title(cfg: PretrainConfig) -> str:
    """'MCM+LP, weighted 1, 0.1' (the report's name of a recipe)."""
    weights = f" {', '.join(f'{w:.10g}' for w in cfg.weights)}" if cfg.weights else ""
    return "+".join(t.upper() for t in cfg.objectives) + ("" if cfg.combiner == "sum" else f", {cfg.combiner}{weights}")


def recipe_rows(rows: dict[str, tuple[str, str, str]], recipes: list[PretrainConfig], per_recipe: bool
                ) -> dict[str, tuple[str, str, str, PretrainConfig | None]]:
    """Row key -> (method, protocol, name, the recipe it starts from; None without pre-training).
    ``per_recipe``: each recipe's pre-trained rows are keyed (and foldered) 'LABEL/method';
    otherwise there is one recipe and every row is flat."""
    expanded = {}
    for key, (method, protocol, name) in rows.items():
        if not METHODS[method][0]:
            expanded[key] = (method, protocol, name, None)
        elif not per_recipe:
            expanded[key] = (method, protocol, name, recipes[0])
        else:
            for recipe in recipes:
                expanded[f"{recipe_label(recipe)}/{key}"] = (
                    method, protocol, name.replace("pretrained", f"pretrained ({recipe_title(recipe)})", 1), recipe)
    return expanded


def run_downstream_experiment(recipes: list[PretrainConfig], task: str | None, fractions: list[float],
                              seeds: list[int], out: Path, command: list[str], finetune_epochs: int,
                              progress: bool = True, log=info, protocols: list[str] | None = None,
                              per_recipe: bool = False, trees: str = "default", jobs: int = 1) -> Path:
    """Pre-train each recipe per seed, run every method × protocol × fraction × seed (the
    pre-trained methods once per recipe, the others once); write out/report.md and
    out/metric_vs_fraction.png. ``per_recipe`` (always with several recipes) labels the
    pre-training runs by recipe and puts each recipe's pre-trained rows in downstream/LABEL/;
    without it one recipe's runs are labelled by its objectives and its rows are flat. ``trees``:
    the gbdt rows' LightGBM, at its defaults or tuned on validation."""
    protocols = protocols or ["causal"]
    per_recipe = per_recipe or len(recipes) > 1

    def label(recipe: PretrainConfig) -> str:
        return recipe_label(recipe) if per_recipe else "+".join(recipe.objectives)

    labels = [label(r) for r in recipes]
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise RelsslError(f"--recipes: recipe {', '.join(repeated)} is given twice")
    out.mkdir(parents=True, exist_ok=True)
    run_grid(dict(zip(labels, recipes)), seeds, out, progress, log, jobs)
    base = recipes[0]
    data = load_dataset(base.data, base.skip_bad_rows, base.on_orphans, base.on_bad_values)
    event_graph = not isinstance(data, Database)
    rows = recipe_rows(method_rows(protocols, event_graph, not event_graph and task in data.tasks,
                                   links=not event_graph or data.src is not None), recipes, per_recipe)
    finals: dict[tuple[str, float], list[dict]] = {}
    for seed in seeds:
        prep = None
        for fraction in fractions:
            for key, (method, protocol, _, recipe) in rows.items():
                _, mode, _ = METHODS[method]
                # --lr-schedule and --warmup-epochs shape pre-training; fine-tuning, at its own epochs, runs constant
                train = replace(recipe or base, seed=seed, epochs=finetune_epochs, time_aware=protocol == "causal",
                                lr_schedule="constant", warmup_epochs=0.0)
                run = out / "downstream" / f"{key}-f{fraction:g}-seed{seed}"
                init = str(out / "runs" / f"{label(recipe)}-seed{seed}") if recipe else "scratch"
                wanted = FinetuneConfig(task, init, mode, fraction, train, trees=trees if mode in GBDT_MODES else "default")
                wanted.validate()

                def train_run(resume: bool) -> None:
                    nonlocal prep
                    if prep is None:  # the same prepared data for every method and recipe of this seed
                        prep = prepare_for(wanted.train, wanted.init)
                    finetune(wanted, run, prep, progress, log=lambda msg: log(f"  {msg}"), resume=resume)

                # the init folder's path depends on how --out was spelt: not compared
                ignored = ("init", *(("task",) if task is None else ()), *(() if recipe else RECIPE_KEYS))
                record = reuse_or_train(run, wanted, train_run, f"{key}, {percent(fraction)} labels, seed {seed}",
                                        log, resolved=ignored)
                finals.setdefault((key, fraction), []).append(record["final"])

    first = finals[("gbdt", fractions[0])][0]
    kind = "regression" if "test/rmse" in first else "multiclass" if "test/macro_f1" in first else "binary"
    columns = COLUMNS[kind]
    primary = next(iter(columns))
    names = {key: REFERENCE_NAMES[kind] if key == "reference" else
             f"{name}, tuned" if trees == "tuned" and METHODS[method][1] in GBDT_MODES else name
             for key, (method, _, name, _) in rows.items()}
    prefixes = [f"{label}/" if per_recipe else "" for label in labels]
    verdicts = []
    for recipe, prefix in zip(recipes, prefixes):
        verdicts += [_verdict(finals, fractions, primary, columns[primary], len(seeds), names, prefix,
                              recipe_title(recipe) if per_recipe else None), ""]
    report = [
        f"# Does pre-training help? `{base.data}`, task `{first['task']}`",
        "",
        f"Regenerate with: `{shlex.join(command)}`",
        "",
        f"Pre-training: {'; '.join(recipe_title(r) for r in recipes)} ({base.mask} masks), "
        f"{base.epochs} epoch{'s' if base.epochs > 1 else ''}"
        f"{f' of {base.train_rows_per_epoch:,} rows' if base.train_rows_per_epoch else ''}, "
        f"{base.model.channels} channels, {_backbone(base)} (runs: `runs/`). Downstream: up to "
        f"{finetune_epochs} epochs"
        f"{f' of at most {base.train_rows_per_epoch:,} labelled rows' if base.train_rows_per_epoch else ''}, "
        f"early stopping on validation {SELECTED_ON[kind]} (runs: `downstream/`). "
        f"Seeds {', '.join(map(str, seeds))}: each seed pre-trains anew and draws its own label subsample"
        f"{' (the same for every recipe; the methods without pre-training run once)' if per_recipe else ''}. "
        f"Test split; mean ± std over seeds; best of each label fraction in bold. "
        f"Protocol{'s' if len(protocols) > 1 else ''}: {', '.join(protocols)} (causal: a row's neighbourhood "
        f"holds only events at or before its time; transductive: its split's whole graph, later events "
        f"included, as Multi-GNN evaluates{'; GBDT graph features are always causal' if 'gbdt-graph' in rows else ''})."
        + ("" if kind != "binary" else " F1 is the positive class's at the threshold chosen on validation "
                                 "predictions only (the threshold column)."),
        "",
        _table(finals, fractions, columns, names),
        "",
        *verdicts,
        *([_recipes_compared(finals, fractions, primary, columns[primary], recipes, prefixes), ""]
          if len(recipes) > 1 else []),
        _ladder(finals, fractions[-1], primary, columns[primary], names),
        "",
        "![test metric against label fraction](metric_vs_fraction.png)",
        "",
    ]
    path = write_report(out, report)
    _plot(finals, fractions, {k: v for k, v in columns.items() if k != "threshold"}, names,
          out / "metric_vs_fraction.png", f"{base.data}: {first['task']}")
    return path


def _backbone(cfg: PretrainConfig) -> str:
    options = [name for name, on in (("reverse message passing", cfg.model.reverse_mp),
                                      ("port numbers", cfg.model.ports), ("ego ids", cfg.model.ego_ids)) if on]
    return f"{cfg.model.gnn} with fan-outs {cfg.model.fanouts}" + (f" and {', '.join(options)}" if options else "")


def _values(finals, key: str, fraction: float, metric: str) -> list[float]:
    return [f[metric] for f in finals.get((key, fraction), []) if metric in f]


def _table(finals, fractions: list[float], columns: dict[str, str], names: dict[str, str]) -> str:
    lines = ["| labels | method | train labels | " + " | ".join(columns.values()) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for fraction in fractions:
        stats = {k: {c: mean_std(_values(finals, k, fraction, c)) for c in columns} for k in names}
        best = {}
        for c in columns:
            means = [s[c][0] for s in stats.values() if not math.isnan(s[c][0])]
            if means and c != "threshold":
                best[c] = (max if higher_is_better(c) else min)(means)
        for key, name in names.items():
            cells = []
            for c in columns:
                mean, std = stats[key][c]
                text = "–" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"
                cells.append(f"**{text}**" if best.get(c) == mean else text)
            n = np.mean(_values(finals, key, fraction, "train_labels"))
            lines.append(f"| {percent(fraction)} | {name} | {n:,.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _difference(finals, a: str, b: str, fraction: float, metric: str) -> tuple[float, bool | None]:
    """(mean of a − mean of b, whether it exceeds the larger seed std; None with one seed)."""
    (ma, sa), (mb, sb) = mean_std(_values(finals, a, fraction, metric)), mean_std(_values(finals, b, fraction, metric))
    one_seed = len(_values(finals, a, fraction, metric)) < 2
    return ma - mb, None if one_seed else abs(ma - mb) > max(sa, sb)


def _verdict(finals, fractions: list[float], metric: str, title: str, num_seeds: int,
             names: dict[str, str], prefix: str = "", recipe: str | None = None) -> str:
    """Whether pre-training (the recipe whose rows are keyed ``prefix``) helped, from the numbers:
    pretrained + finetune against scratch at each label fraction (the same training, only the
    initialisation differs; causal protocol), then the probe and the trees."""
    sign = 1 if higher_is_better(metric) else -1
    finetuned, probe = f"{prefix}finetune", f"{prefix}probe"
    parts, better, worse = [], 0, 0
    for fraction in fractions:
        diff, beyond = _difference(finals, finetuned, "scratch", fraction, metric)
        # With one seed there is no noise estimate: every difference counts, if it shows at the
        # three decimals reported.
        shown = round(sign * diff, 3)
        better += bool(shown > 0 and beyond is not False)
        worse += bool(shown < 0 and beyond is not False)
        noise = "" if beyond is None else (" (beyond seed noise)" if beyond else " (within seed noise)")
        parts.append(f"{diff:+.3f} at {percent(fraction)}{noise}")
    qualifier = "" if num_seeds < 2 else " beyond seed noise"
    outcome = (f"helped{qualifier} at every label fraction" if better == len(fractions) else
               f"did not help{qualifier} at any label fraction" if better == 0 else
               f"helped{qualifier} at {better} of {len(fractions)} label fractions")
    if worse:
        outcome += f" and hurt{qualifier} at {worse}"
    probes = ", ".join(f"{_difference(finals, probe, 'scratch', f, metric)[0]:+.3f}" for f in fractions)
    best_trees = "gbdt-graph" if ("gbdt-graph", fractions[0]) in finals else "gbdt"
    trees = ", ".join(f"{_difference(finals, finetuned, best_trees, f, metric)[0]:+.3f}" for f in fractions)
    return (f"**Verdict{f', {recipe}' if recipe else ''} (test {title}, {'higher' if sign > 0 else 'lower'} is "
            f"better, mean over {num_seeds} seed{'s' if num_seeds > 1 else ''}, causal protocol):** pre-training "
            f"{outcome}. Pretrained + finetune minus scratch: {'; '.join(parts)}. Pretrained + probe minus scratch: "
            f"{probes}. Pretrained + finetune minus {names[best_trees]}: {trees} "
            f"(label fractions {', '.join(percent(f) for f in fractions)}).")


def _recipes_compared(finals, fractions: list[float], metric: str, title: str, recipes: list[PretrainConfig],
                      prefixes: list[str]) -> str:
    """Per label fraction, the best recipe fine-tuned and its lead over the runner-up."""
    sign = 1 if higher_is_better(metric) else -1
    parts = []
    for fraction in fractions:
        ranked = sorted(zip(recipes, prefixes), key=lambda rp: -sign * mean_std(
            _values(finals, f"{rp[1]}finetune", fraction, metric))[0])
        (best, a), (second, b) = ranked[0], ranked[1]
        diff, beyond = _difference(finals, f"{a}finetune", f"{b}finetune", fraction, metric)
        noise = "" if beyond is None else (" (beyond seed noise)" if beyond else " (within seed noise)")
        parts.append(f"at {percent(fraction)} {recipe_title(best)}, {sign * diff:+.3f} over {recipe_title(second)}"
                     f"{noise}")
    return f"**Recipes (test {title}, pretrained + finetune, best first):** {'; '.join(parts)}."


def _ladder(finals, fraction: float, metric: str, title: str, names: dict[str, str]) -> str:
    """Every method's mean at the largest label fraction, best first: the literature's ladder."""
    sign = 1 if higher_is_better(metric) else -1
    means = {k: mean_std(_values(finals, k, fraction, metric))[0] for k in names}
    order = sorted((k for k in means if not math.isnan(means[k])), key=lambda k: -sign * means[k])
    steps = ", ".join(f"{names[k]} {means[k]:.3f}" for k in order)
    return f"**Ladder (test {title} at {percent(fraction)} labels, best first):** {steps}."


def _plot(finals, fractions: list[float], columns: dict[str, str], names: dict[str, str], path: Path,
          title: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(4.4 * len(columns), 3.4), squeeze=False)
    for ax, (metric, name) in zip(axes[0], columns.items()):
        for key, label in names.items():
            stats = [mean_std(_values(finals, key, f, metric)) for f in fractions]
            ax.errorbar(fractions, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", capsize=3,
                        label=label)
        ax.set_xscale("log")
        ax.set_xlabel("label fraction")
        ax.set_title(f"test {name}")
        ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
