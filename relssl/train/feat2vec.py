"""`relssl feat2vec`: Feat2Vec as a model of its own on one table's rows (no GNN); on a database,
with groups from the tables its foreign keys reference.

The run folder follows `relssl pretrain` (relssl.train.run_folder). final.json holds, per
evaluated group G, ``feat2vec/mpr/G`` next to ``popularity/mpr/G`` (rank by training frequency), the number of candidate values and the share of test rows whose true
value is a candidate (``coverage/G``; the others cannot be ranked and are left out).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch_frame
from torch import nn
from tqdm.auto import tqdm

from relssl.data.cache import data_digests
from relssl.data.datasets import load_dataset
from relssl.data.database import Database
from relssl.data.prepare import PreparedData, prepare, prepare_database
from relssl.data.splits import TEST, TRAIN, VAL, parse_fractions
from relssl.errors import RelsslError
from relssl.nn.optim import adamw
from relssl.options import from_mapping, option
from relssl.metrics.ranking import percentile_ranks
from relssl.feat2vec import Feat2Vec, find_group, parse_groups
from relssl.nn.row_encoder import column_encoder
from relssl.train import seeding
from relssl.logs import info
from relssl.train.callbacks import Callback, check_loggers, make_loggers
from relssl.train.loop import OneModel, fit, report_step
from relssl.train.pretrain import portable, resolve_device
from relssl.train.run_folder import RunFolder


@dataclass
class Feat2VecConfig:
    data: str = option("synthetic-aml", "built-in dataset name, IBM AML CSV, YAML schema or database")
    table: str | None = option(None, "a database's table whose rows Feat2Vec models (default: the largest timed one)")
    groups: str | dict | None = option(None, "feature groups 'NAME=COL+COL;COL;@source;@target' (default: one group "
                                             "per feature column, plus @source and @target, the entity ids, when "
                                             "the data has keys; on a database, @KEY per foreign key, and "
                                             "KEY.COLUMN names a categorical column of the row KEY references)")
    target: str | None = option(None, "supervised mode: corrupt only this group")
    eval_groups: str | None = option(None, "';'-separated groups to rank on the test split (default: the target, "
                                           "else every categorical or entity-id group)")
    negatives: int = option(5, "k, negatives per real row")
    alpha1: float = option(0.25, "group choice ∝ parameter count^alpha1")
    alpha2: float = option(0.75, "value choice ∝ training frequency^alpha2")
    channels: int = option(32, "embedding width of every group")
    epochs: int = option(5, "maximum epochs (early stopping may end sooner)")
    batch_size: int = option(1024, "rows per step")
    lr: float = option(1e-2, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    seed: int = option(0, "fixes splits, noise draws and initialisation")
    split: str = option("60/20/20", "train/val/test percentages, split by time")
    max_categories: int = option(1000, "most frequent categories kept per column (others: unknown)")
    train_rows_per_epoch: int | None = option(None, "a fresh seeded sample of this many training rows each epoch "
                                                    "(default: all)")
    eval_rows: int | None = option(20_000, "fixed seeded sample of validation/test rows")
    patience: int = option(2, "epochs without a better validation loss before stopping")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    log: list[str] = option(help="loggers beside metrics.jsonl: csv (every step's loss, steps.csv), tensorboard "
                                 "(event files under tensorboard/; the tensorboard extra)", factory=list)

    @classmethod
    def from_dict(cls, raw: dict) -> "Feat2VecConfig":
        cfg = from_mapping(cls, raw)
        for name in ("epochs", "batch_size", "channels", "negatives", "patience"):
            if getattr(cfg, name) < 1:
                raise RelsslError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: expected a positive integer")
        parse_fractions(cfg.split)
        check_loggers(cfg.log)
        cfg.data = portable(cfg.data)
        return cfg


def prepare_rows(cfg: Feat2VecConfig, data, seed: int | None = None) -> PreparedData:
    """The rows Feat2Vec models: an event table's, or a database's ``cfg.table``'s with the tables its
    keys reference (their ids and columns are groups too)."""
    seed = cfg.seed if seed is None else seed
    if isinstance(data, Database):
        return prepare_database(data, cfg.table, parse_fractions(cfg.split), seed, cfg.max_categories)
    return prepare(data, parse_fractions(cfg.split), seed, cfg.max_categories)


class Feat2VecModel(nn.Module):
    """Feat2Vec with its own cell encoders (pytorch-frame stype-wise: embedding tables, per-column
    numerical/timestamp/embedding maps) under the group extractors."""

    def __init__(self, prep: PreparedData, cfg: Feat2VecConfig):
        super().__init__()
        self.cells = column_encoder(prep.events, cfg.channels)
        self.task = Feat2Vec(prep, parse_groups(cfg.groups, prep), cfg.channels, cfg.negatives, cfg.alpha1,
                             cfg.alpha2, cfg.target)

    def cell_embeddings(self, tf):
        return self.cells(tf)[0]

    def forward(self, rows, generator):
        return self.task(self.cell_embeddings, rows, None, generator)


def eval_groups(cfg: Feat2VecConfig, prep: PreparedData, task: Feat2Vec) -> list[int]:
    """Groups to rank: those named, else the target, else every group of categorical columns or an entity id."""
    if cfg.eval_groups:
        return [find_group(task.groups, n.strip(), "--eval-groups") for n in cfg.eval_groups.split(";") if n.strip()]
    if task.target is not None:
        return [task.target]
    stypes = {c.name: c.stype for c in prep.events.columns}
    return [g for g, grp in enumerate(task.groups)
            if grp.entity or all(stypes.get(c, torch_frame.categorical) == torch_frame.categorical  # lookups: ids
                                 for c in grp.columns)]


@torch.no_grad()
def group_mpr(model: Feat2VecModel, rows: torch.Tensor, group: int, batch_size: int) -> dict[str, float]:
    """Feat2Vec's and popularity's MPR for ``group`` on ``rows``, with the candidate count and coverage."""
    task = model.task
    model.eval()
    cand = task.candidates(model.cell_embeddings, group)
    ids = cand[0]
    if len(ids) < 2:
        raise RelsslError(f"--eval-groups '{task.groups[group].name}': fewer than two training values to rank")
    ranks = torch.cat([task.rank(model.cell_embeddings, r, group, cand) for r in rows.split(batch_size)])
    popularity = popularity_ranks(task, rows, group)
    name = task.groups[group].name
    return {f"feat2vec/mpr/{name}": float(ranks.mean()), f"popularity/mpr/{name}": float(popularity.mean()),
            f"candidates/{name}": float(len(ids)), f"coverage/{name}": len(ranks) / max(len(rows), 1)}


def popularity_ranks(task: Feat2Vec, rows: torch.Tensor, group: int) -> torch.Tensor:
    """Percentile ranks when every row ranks the candidates by their training frequency."""
    truth = task.true_candidate(rows, group)
    truth = truth[truth >= 0]
    counts = task.sampler.train_counts[group][task.sampler.candidates[group][0]]
    return percentile_ranks(counts.expand(len(truth), -1), truth)


class Feat2VecTrainer(OneModel):
    def __init__(self, cfg: Feat2VecConfig, prep: PreparedData | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.prep = prep or prepare_rows(cfg, load_dataset(cfg.data))
        torch.manual_seed(cfg.seed)
        self.model = Feat2VecModel(self.prep, cfg).to(self.device)
        self.eval_groups = eval_groups(cfg, self.prep, self.model.task)
        self.optimizer = adamw(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.eval_rows = {s: seeding.eval_rows(self.prep, s, cfg.eval_rows, cfg.seed) for s in (VAL, TEST)}

    def train_epoch(self, epoch: int, progress: bool = True) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        rows = self.prep.rows(TRAIN)
        rows = rows[torch.randperm(len(rows), generator=seeding.generator(cfg.seed, seeding.SHUFFLE, epoch))]
        rows = rows[: cfg.train_rows_per_epoch] if cfg.train_rows_per_epoch else rows
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(rows.split(cfg.batch_size), desc=f"epoch {epoch}", leave=False, disable=not progress)
        for step, batch in enumerate(bar):
            out = self.model(batch, seeding.generator(cfg.seed, seeding.TRAIN_STEP, epoch, step))
            if not math.isfinite(out.loss.item()):
                raise RelsslError(f"training diverged: loss is {out.loss.item()} at epoch {epoch}; try a lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            self.optimizer.step()
            add(sums, out)
            report_step(self, epoch, step, float(out.loss.detach()))
        seconds = time.perf_counter() - start
        return {**summarize(sums), "seconds": seconds, "rows_per_s": len(rows) / seconds}

    @torch.no_grad()
    def evaluate(self, split: int) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        for step, batch in enumerate(self.eval_rows[split].split(self.cfg.batch_size)):
            add(sums, self.model(batch, seeding.generator(self.cfg.seed, seeding.EVAL_STEP, split, step)))
        return summarize(sums)

    def validate(self) -> dict[str, float]:
        return self.evaluate(VAL)

    def final(self) -> dict[str, float]:
        out = {k: v for k, v in self.evaluate(TEST).items() if "/" in k}
        for g in self.eval_groups:
            out.update(group_mpr(self.model, self.eval_rows[TEST], g, self.cfg.batch_size))
        return out


def add(sums: dict[str, float], out) -> None:
    sums["loss"] = sums.get("loss", 0.0) + float(out.loss.detach()) * out.sums["pair_count"]
    for key, value in out.sums.items():
        sums[key] = sums.get(key, 0.0) + value


def summarize(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums.get("pair_count", 0.0), 1.0)
    loss = sums.get("loss", math.nan) / n
    return {"loss": loss, "feat2vec/loss": loss, "feat2vec/pair_acc": sums.get("pair_correct", math.nan) / n}


def train_feat2vec(cfg: Feat2VecConfig | None, out: str | Path, progress: bool = True, log=info,
                   prep: PreparedData | None = None, resume: bool = False,
                   changes: dict | None = None, callbacks: list[Callback] = ()) -> dict[str, float]:
    """Train with early stopping on the validation NCE loss; test metrics of the best epoch.
    With ``resume`` the run continues from its checkpoint, with its own config.yaml unless ``cfg``
    is given (``changes``: the settings it may change, such as more ``epochs``)."""
    run = RunFolder(out)
    cfg = run.settings(cfg, resume, Feat2VecConfig.from_dict, changes)
    run.check_data(data_digests(cfg.data), resume)
    trainer = Feat2VecTrainer(cfg, prep)
    run.start(asdict(cfg))
    result = fit(trainer, run, cfg.epochs, cfg.patience, "feat2vec/loss", resume=resume, log=log, progress=progress,
                 callbacks=[*make_loggers(cfg.log), *callbacks])
    run.load_weights(trainer.model, trainer.device)
    speeds = [r["rows_per_s"] for r in result.history if r["split"] == "train"]
    final = {**trainer.final(), "best_epoch": result.best_epoch, "rows_per_s": sum(speeds) / len(speeds)}
    run.write_final(final)
    return final
