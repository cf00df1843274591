"""`relssl experiment feat2vec`: the mean percentile rank (MPR) of held-out feature groups under Feat2Vec, next to a popularity ranking and an MCM-pretrained backbone.

The MCM baseline ranks a categorical column's values by its MCM head's logits for that cell, with
the cell hidden as the run was trained to see hidden cells ([MASK] for remove/bert masks, a
training draw for replace masks) and the row's graph context; the candidate set (the column's
training vocabulary), the test rows and the split are the same as Feat2Vec's. Entity-id and
multi-column groups have no MCM head: their MCM cell stays empty.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path

import torch
import torch_frame

from relssl.logs import info
from relssl.data.datasets import load_dataset
from relssl.data.prepare import PreparedData
from relssl.data.splits import TEST
from relssl.metrics.ranking import percentile_ranks
from relssl.experiments.report import values_table, write_report
from relssl.experiments.runner import reuse_or_train, run_grid
from relssl.feat2vec import parse_groups
from relssl.train import seeding
from relssl.train.feat2vec import Feat2VecConfig, prepare_rows, train_feat2vec
from relssl.train.pretrain import PretrainConfig, Pretrainer
from relssl.train.run_folder import RunFolder


@torch.no_grad()
def mcm_mpr(run: Path, prep: PreparedData, rows: torch.Tensor, column: str, batch_size: int) -> float:
    """MPR of ``column``'s true value on ``rows`` by the MCM head of the pre-training run in ``run``."""
    folder = RunFolder(run)
    cfg = PretrainConfig.from_dict(folder.config())
    trainer = Pretrainer(cfg, prep)
    folder.load_weights(trainer.weights(), trainer.device)
    trainer.model.eval()
    mcm = trainer.objectives[cfg.objectives.index("mcm")]
    pos = [c.name for c in prep.events.columns].index(column)
    col = prep.events.columns[pos]
    ranks = []
    for step, batch_rows in enumerate(rows.split(batch_size)):
        gen = seeding.generator(cfg.seed, seeding.EVAL_STEP, TEST, step)
        batch = trainer.builders[TEST](batch_rows, gen).to(trainer.device)
        logits = mcm.predict_column(trainer.model, batch, trainer.model.encode_graph(batch), pos, gen)
        truth = batch.tf.feat_dict[col.stype][:, col.index]
        keep = truth >= 0
        ranks.append(percentile_ranks(logits[keep], truth[keep]))
    return float(torch.cat(ranks).mean())


def feat2vec_final(cfg: Feat2VecConfig, run: Path, prep: PreparedData, progress: bool, log) -> dict:
    """The test metrics of the Feat2Vec run in ``run``, training it first unless it finished."""
    return reuse_or_train(run, cfg, lambda resume: train_feat2vec(
        cfg, run, progress, lambda msg: log(f"  {msg}"), prep, resume=resume),
        f"feat2vec{f', target {cfg.target}' if cfg.target else ''}, seed {cfg.seed}", log)["final"]


def run_feat2vec_experiment(cfg: Feat2VecConfig, seeds: list[int], out: Path, command: list[str],
                            mcm: PretrainConfig, supervised: bool = False, progress: bool = True, log=info) -> Path:
    """Per seed: a Feat2Vec run, an MCM pre-training run and, with ``supervised``, one supervised
    Feat2Vec run per evaluated group (finished runs are reused); writes out/report.md."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(cfg.data)
    preps = {seed: prepare_rows(cfg, data, seed) for seed in seeds}
    stypes = {c.name: c.stype for c in preps[seeds[0]].events.columns}
    columns = {g.name: g.columns for g in parse_groups(cfg.groups, preps[seeds[0]])}
    named = [n.strip() for n in (cfg.eval_groups or "").split(";") if n.strip()] or list(columns)
    with_head = {n for n in named if n in columns and len(columns[n]) == 1
                 and stypes.get(columns[n][0]) == torch_frame.categorical}
    # The MCM baseline is trained only when some evaluated group is a categorical column (it has a head).
    if with_head:
        run_grid({"mcm": mcm}, seeds, out, progress, log)
    values: dict[str, dict[str, list[float]]] = {}
    speed, candidates, coverage = [], {}, {}
    for seed in seeds:
        prep = preps[seed]
        final = feat2vec_final(replace(cfg, seed=seed), out / "runs" / f"feat2vec-seed{seed}", prep, progress, log)
        speed.append(final["rows_per_s"])
        groups = [k.removeprefix("feat2vec/mpr/") for k in final if k.startswith("feat2vec/mpr/")]
        rows = seeding.eval_rows(prep, TEST, mcm.eval_rows, seed)
        for name in groups:
            key = f"{name}/mpr"  # columns are groups (lower is better), rows are rankers

            def record(method: str, mpr: float) -> None:
                values.setdefault(method, {}).setdefault(key, []).append(100 * mpr)

            candidates[name], coverage[name] = int(final[f"candidates/{name}"]), final[f"coverage/{name}"]
            record("popularity", final[f"popularity/mpr/{name}"])
            if name in with_head:
                mcm_dir = out / "runs" / f"mcm-seed{seed}"
                record("MCM head", mcm_mpr(mcm_dir, prep, rows, columns[name][0], mcm.batch_size))
            record("Feat2Vec", final[f"feat2vec/mpr/{name}"])
            if supervised:
                target = replace(cfg, seed=seed, target=name, eval_groups=name)
                folder = out / "runs" / f"feat2vec-target-{re.sub('[^0-9A-Za-z]+', '_', name).strip('_')}-seed{seed}"
                record("Feat2Vec supervised", feat2vec_final(target, folder, prep, progress, log)[f"feat2vec/mpr/{name}"])
    table = values_table(values, {f"{n}/mpr": f"{n} MPR %" for n in candidates}, "ranker", digits=2)
    sizes = ["| group | candidates | test rows ranked |", "|---|---|---|"]
    sizes += [f"| {n} | {candidates[n]:,} | {100 * coverage[n]:.1f} % |" for n in candidates]
    report = [
        f"# Feat2Vec: mean percentile rank on `{cfg.data}`",
        "",
        f"Regenerate with: `{shlex.join(command)}`",
        "",
        f"Feat2Vec ({'supervised, target ' + cfg.target if cfg.target else 'unsupervised'}; groups: "
        f"{cfg.groups or 'one per column and entity id'}; d={cfg.channels}, k={cfg.negatives}, α1={cfg.alpha1}, "
        f"α2={cfg.alpha2}; {cfg.epochs} epochs"
        f"{f' of {cfg.train_rows_per_epoch:,} rows' if cfg.train_rows_per_epoch else ''}, lr {cfg.lr})"
        + (f" and MCM ({mcm.mask} masks, {mcm.epochs} epochs"
           f"{f' of {mcm.train_rows_per_epoch:,} rows' if mcm.train_rows_per_epoch else ''}, d={mcm.model.channels})"
           if with_head else "; no evaluated group has an MCM head, so no MCM baseline")
        + f"; seeds {', '.join(map(str, seeds))}; mean ± std over seeds.",
        "",
        "MPR: for each test row, the share of the other candidate values (the group's values seen in "
        "training) that score at least as high as the true value, averaged over rows; ties count against "
        "the model; 0 % = always first, 50 % = random, lower is better (best in bold). All methods rank "
        "the same fixed, seeded sample of test rows (temporal split); rows whose true value never occurs "
        "in training cannot be ranked and are left out. Popularity ranks by training frequency. MCM: the "
        "MCM head's logits for the hidden cell (categorical columns only; '–' elsewhere)."
        + (" Feat2Vec supervised: one run per group, corrupting only that group." if supervised else ""),
        "",
        table,
        "",
        *sizes,
        "",
        f"Feat2Vec training throughput: {sum(speed) / len(speed):,.0f} rows/s (mean over epochs and seeds; "
        f"device {cfg.device}, {torch.get_num_threads()} thread(s)).",
        "",
    ]
    path = write_report(out, report)
    return path
