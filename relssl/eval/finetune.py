"""Downstream training: does pre-training help a labelled task?

``mode`` is one of
- ``finetune`` — a backbone (random, or pre-trained with ``init``) and an MLP head trained together
  on the labelled training rows: class-weighted BCE (or MSE on standardised targets), AdamW, early
  stopping on validation PR-AUC (or RMSE), best weights kept;
- ``probe`` — a logistic/ridge head on the frozen backbone's embeddings (relssl.eval.downstream);
- ``gbdt`` — gradient-boosted trees on raw features, no backbone (relssl.eval.baseline);
- ``gbdt-graph`` — the same trees on raw plus causal graph features (relssl.eval.graph_features).
Every mode scores validation and test rows, takes the decision threshold from validation alone
and writes a run folder: config.yaml, final.json (threshold, val/* and test/* metrics),
metrics.jsonl and checkpoint.pt (finetune; relssl.train.loop) and model.safetensors (backbone +
head; not for the gbdt modes).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model
from torch import Tensor, nn
from tqdm.auto import tqdm

from relssl.data.cache import data_digests
from relssl.data.entity_tasks import task_rows
from relssl.data.fitted import load_preprocessing, save_preprocessing
from relssl.data.prepare import PreparedData
from relssl.data.splits import TEST, TRAIN, VAL, parse_fractions
from relssl.errors import RelsslError, out_of_memory
from relssl.eval.baseline import cutoff_matrix, gbdt_scores, graph_features, raw_features
from relssl.eval.downstream import fit_probe
from relssl.eval.represent import Representer
from relssl.eval.tasks import labelled_sets, parse_task, table_task
from relssl.metrics.classification import selection_score, split_metrics
from relssl.nn.backbone import Backbone
from relssl.nn.gnn import mlp
from relssl.nn.optim import adamw, set_lr
from relssl.options import from_mapping
from relssl.train import seeding
from relssl.logs import info
from relssl.train.callbacks import Callback, make_loggers
from relssl.train.loop import OneModel, fit, report_step
from relssl.train.model_card import write_model_card
from relssl.train.pretrain import PretrainConfig, portable, prepare_data, resolve_device
from relssl.train.run_folder import RunFolder, damaged

MODES = ("finetune", "probe", "gbdt", "gbdt-graph", "reference")
GBDT_MODES = ("gbdt", "gbdt-graph")
TREES = ("default", "tuned")
NO_BACKBONE = (*GBDT_MODES, "reference")  # modes that train no backbone: they take no --init
# Settings a pre-trained backbone fixes: its weights only fit data prepared and a model built this way.
INHERITED = ("data", "table", "tables", "on_orphans", "on_bad_values", "split", "max_categories", "text_model",
             "model")


@dataclass
class FinetuneConfig:
    task: str | None = None  # KIND:COLUMN or TABLE.COLUMN (relssl.eval.tasks); None: the first label column
    init: str = "scratch"  # or a pretrain run folder
    mode: str = "finetune"
    label_fraction: float = 1.0  # seeded (stratified) share of the training labels used
    train: PretrainConfig = field(default_factory=PretrainConfig)  # data, model and optimiser settings
    task_type: str | None = None  # with TABLE.COLUMN: binary, multiclass or regression (default: from the values)
    trees: str = "default"  # gbdt modes: LightGBM's defaults, or "tuned" on validation (relssl.eval.baseline.TREE_GRID)

    @classmethod
    def from_dict(cls, raw: dict) -> "FinetuneConfig":
        """A saved config.yaml (the task as resolved when the run started)."""
        return from_mapping(cls, raw, train=PretrainConfig.from_dict(raw.get("train") or {}))

    def validate(self) -> None:
        named = table_task(self.task)
        if named is not None:  # the task's table is the run's --table
            if self.train.table not in (None, named[0]):
                raise RelsslError(f"--task {self.task} names table '{named[0]}' but --table is '{self.train.table}'")
            self.train.table = named[0]
        if self.mode not in MODES:
            raise RelsslError(f"--mode '{self.mode}': expected one of {', '.join(MODES)}")
        if self.trees not in TREES:
            raise RelsslError(f"--trees '{self.trees}': expected one of {', '.join(TREES)}")
        if self.trees != "default" and self.mode not in GBDT_MODES:
            raise RelsslError(f"--trees {self.trees} tunes the trees of --mode {' or '.join(GBDT_MODES)}, not --mode {self.mode}")
        if self.train.workers or self.train.precision != "fp32":
            raise RelsslError("--workers and --precision are pre-training's; fine-tuning builds its batches in its "
                              "loop, in fp32")
        if self.init != "scratch":
            self.init = portable(self.init)
        if self.mode in NO_BACKBONE and self.init != "scratch":
            raise RelsslError(f"--mode {self.mode} uses no backbone: it takes no --init")
        self.train.validate()
        if self.init != "scratch":
            check_compatible(self.train, pretrained_config(self.init), self.init)


def pretrained_config(run_dir: str | Path, flag: str = "--init") -> PretrainConfig:
    """The settings of the pre-training run in ``run_dir`` (given as ``flag``)."""
    run = Path(run_dir)
    expected = ("expected 'scratch' or " if flag == "--init" else "expected ") + "the --out folder of `relssl pretrain`"
    for name in ("config.yaml", "model.safetensors"):
        if not (run / name).exists():
            raise RelsslError(f"{flag} {run}: not a pretrain run folder (no {name}); {expected}")
    folder = RunFolder(run, writer=False)
    if (kind := folder.trained_by()) != "relssl pretrain":
        raise RelsslError(f"{flag} {run}: a run folder of `{kind}`; {expected}")
    return PretrainConfig.from_dict(folder.config())


def same_data(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def check_compatible(train: PretrainConfig, run: PretrainConfig, run_dir: str | Path) -> None:
    """The pre-trained backbone must see the data prepared as in pre-training (same data, split,
    vocabulary limit) and the same model settings."""
    def settings(cfg: PretrainConfig) -> dict:
        flat = {k: getattr(cfg, k) for k in INHERITED if k != "model"}
        return {**flat, **{f"model.{k}": v for k, v in asdict(cfg.model).items()}}

    ours, theirs = settings(train), settings(run)
    # Pre-trained on several tables, a task may take the rows of any of them; pre-trained on the
    # default table, a task may name it (preprocessing.json says which one that was).
    tables = run.tables or ([_pretrained_table(run_dir)] if run.table is None else [])
    same = {"data": same_data(ours["data"], theirs["data"]), "table": ours["table"] in tables}
    differ = [k for k in ours if ours[k] != theirs[k] and not same.get(k)]
    if differ:
        raise RelsslError(f"--init {run_dir}: the backbone was pre-trained with "
                          f"{', '.join(f'{k}={theirs[k]}' for k in differ)} but this run asks for "
                          f"{', '.join(f'{k}={ours[k]}' for k in differ)}; a pre-trained backbone needs the same "
                          f"prepared data (data, split, max_categories) and model: drop those options or "
                          f"pre-train anew")


def _pretrained_table(run_dir: str | Path) -> str | None:
    """The table a database run pre-trained on by default (None: not a database run, or one saved
    before preprocessing.json)."""
    try:
        saved = load_preprocessing(run_dir)
    except RelsslError:
        return None
    return saved.get("seed") if saved.get("kind") == "database" else None


def load_backbone(backbone: Backbone, run_dir: str | Path) -> None:
    """The backbone's weights from a pretrain run's model.safetensors (tensors only, never unpickled)."""
    path = Path(run_dir) / "model.safetensors"
    try:
        missing, _ = load_model(nn.ModuleDict({"backbone": backbone}), str(path), strict=False)
    except RuntimeError as err:
        raise RelsslError(f"{path}: its weights do not fit this data's encoding ({str(err).splitlines()[-1].strip()}); "
                          f"was it pre-trained on the same prepared data?") from None
    except Exception as err:  # safetensors' own error: not a whole safetensors file
        if out_of_memory(err):
            raise
        raise RelsslError(damaged(path, err)) from None
    if missing and all(k.startswith("backbone.age.") for k in missing):
        raise RelsslError(f"{path}: the backbone was pre-trained without rows' ages (before --node-age); use it "
                          f"with --no-node-age")
    if missing:
        raise RelsslError(f"{path}: no weights for {sorted(missing)[:3]}; not a relssl backbone of this shape")


def prepare_for(train: PretrainConfig, init: str) -> PreparedData:
    """Data prepared as the pre-trained run prepared it (its seed, for splits without time)."""
    return prepare_data(train if init == "scratch" else replace(train, seed=pretrained_config(init).seed))


class DownstreamModel(nn.Module):
    """A backbone and a task head, saved together."""

    def __init__(self, backbone: Backbone, head: nn.Module, rep: Representer):
        super().__init__()
        self.backbone, self.head, self.rep = backbone, head, rep

    def forward(self, batch) -> Tensor:
        return self.head(self.rep(self.backbone, batch)).squeeze(-1)


def labelled_history(prep: PreparedData, labelled: Tensor) -> PreparedData:
    """With a share of the training labels, the seed table's labels kept as history
    (``labels_as_history``) are only those of its labelled training rows: a run with 10 % of the
    labels reads 10 % of the training labels, in its trees too (the other rows carry no label
    feature at all, as rows later than the seed). Validation and test rows keep theirs, known to
    any prediction later than them. The data is copied, not changed."""
    db = prep.database
    if db is None or not db.history or db.history[db.seed_table] is None:
        return prep
    known = torch.from_numpy((prep.split != TRAIN) | np.isin(np.arange(len(prep.split)), labelled.numpy()))
    return replace(prep, database=replace(db, history_known={**db.history_known, db.seed_table: known}))


class Finetuner:
    """The labelled sets, representer and scoring of one downstream run."""

    def __init__(self, cfg: FinetuneConfig, prep: PreparedData | None = None):
        cfg.validate()
        self.cfg, t = cfg, cfg.train
        self.device = resolve_device(t.device)
        self.prep = prep or prepare_for(t, cfg.init)
        db = self.prep.database
        tasks = db.tasks if db is not None else {}
        self.spec = parse_task(cfg.task, self.prep.data, cfg.task_type, tasks)
        self.kind, self.regression = self.spec.kind, self.spec.regression
        # An entity task's examples: entity rows at cut-off times (relssl.data.entity_tasks).
        self.task = tasks.get(self.spec.column) if self.spec.target == "entity" else None
        self.examples = task_rows(self.task, db) if self.task is not None else None
        self.sets = labelled_sets(self.prep, self.spec, t.seed, cfg.label_fraction, parse_fractions(t.split),
                                  self.examples)
        for split in (VAL, TEST):  # a fixed seeded sample, shared by every mode with this seed
            pick = seeding.eval_sample(len(self.sets.ids[split]), t.eval_rows, t.seed, split)
            self.sets.ids[split], self.sets.y[split] = self.sets.ids[split][pick], self.sets.y[split][pick.numpy()]
        if self.kind == "binary" and not self.sets.y[VAL].any():  # PR-AUC, the threshold: undefined
            raise RelsslError(f"--task {self.spec.name}: the validation rows hold no '{self.sets.positive}' label, so "
                              f"no epoch or threshold can be chosen on them; use more data or a longer validation "
                              f"split (--split)")
        if cfg.label_fraction < 1 and self.task is None:  # an entity task's labels are no table's history
            self.prep = labelled_history(self.prep, self.sets.ids[TRAIN])
        y = self.sets.y[TRAIN]
        # Heads predict standardised targets (regression) or logits (one, or one per class).
        self.mean, self.std = (float(y.mean()), float(y.std()) or 1.0) if self.regression else (0.0, 1.0)
        self.outputs = len(self.sets.classes) if self.kind == "multiclass" else 1
        self.rep = Representer(self.prep, self.spec.target, t.model.fanouts, t.time_aware, self.examples,
                               self.task.entity if self.task is not None else None)

    def build_backbone(self) -> Backbone:
        torch.manual_seed(self.cfg.train.seed)
        seeding.deterministic_kernels()
        backbone = Backbone(self.prep, self.cfg.train.model)
        if self.cfg.init != "scratch":
            load_backbone(backbone, self.cfg.init)
        return backbone.to(self.device)

    def target(self, split: int) -> Tensor:
        if self.kind == "multiclass":
            return torch.as_tensor(self.sets.y[split], dtype=torch.long)
        return torch.as_tensor((self.sets.y[split] - self.mean) / self.std, dtype=torch.float32)

    def to_scores(self, out: Tensor) -> np.ndarray:
        """Head outputs -> positive-class probabilities, [n, classes] probabilities, or predictions
        in the label's units."""
        out = out.double().cpu()
        if self.kind == "multiclass":
            return torch.softmax(out, -1).numpy()
        return (out * self.std + self.mean).numpy() if self.regression else torch.sigmoid(out).numpy()

    def scores(self, model: DownstreamModel, split: int) -> np.ndarray:
        t = self.cfg.train
        emb = self.rep.embed(model.backbone, self.sets.ids[split], split, t.batch_size, t.seed, self.device, seeding.DOWNSTREAM_EVAL)
        with torch.no_grad():
            return self.to_scores(model.head(emb.to(self.device)).squeeze(-1))

    def metrics(self, val: np.ndarray, test: np.ndarray) -> dict[str, float]:
        if self.kind == "multiclass":  # a column per class, also for classes the model never saw
            val, test = (np.pad(x, ((0, 0), (0, self.outputs - x.shape[1]))) for x in (val, test))
        return split_metrics(self.kind, (val, self.sets.y[VAL]), (test, self.sets.y[TEST]))

    def run_gbdt(self, graph: bool = False) -> dict[str, float]:
        """Trees on raw features, or with ``graph`` on raw plus causal graph features (computed for
        the labelled rows only: they cost far more than raw ones)."""
        ids = [self.sets.ids[s].numpy() for s in (TRAIN, VAL, TEST)]
        if self.task is not None:
            if graph:
                raise RelsslError(f"--mode gbdt-graph reads an event graph; entity task '{self.task.name}' takes "
                                  f"--mode gbdt (its features already count the linked rows)")
            x, categorical = cutoff_matrix(self.prep, self.task, self.examples)
            train, val, test = (x[i] for i in ids)
        elif graph:
            x, categorical = graph_features(self.prep, self.spec.target, np.concatenate(ids))
            train, val, test = np.split(x, np.cumsum([len(i) for i in ids])[:-1])
        else:
            x, categorical = raw_features(self.prep, self.spec.target)
            train, val, test = (x[i] for i in ids)
        val, test = gbdt_scores(train, self.sets.y[TRAIN], categorical, self.kind, self.cfg.train.seed, val, test,
                                tune=(val, self.sets.y[VAL]) if self.cfg.trees == "tuned" else None)
        return self.metrics(val, test)

    def run_reference(self) -> dict[str, float]:
        """The trivial reference: one prediction for every row from the training labels alone (their
        mean; their class shares, whose argmax is the majority class; their positive rate)."""
        y, n = self.sets.y[TRAIN], [len(self.sets.ids[s]) for s in (VAL, TEST)]
        if self.kind == "multiclass":
            share = np.bincount(y, minlength=self.outputs) / max(len(y), 1)
            return self.metrics(*(np.tile(share, (k, 1)) for k in n))
        return self.metrics(*(np.full(k, float(y.mean())) for k in n))

    def run_probe(self) -> tuple[dict[str, float], DownstreamModel]:
        t = self.cfg.train
        backbone = self.build_backbone()
        x = self.rep.embed(backbone, self.sets.ids[TRAIN], TRAIN, t.batch_size, t.seed, self.device, seeding.DOWNSTREAM_EVAL)
        head = fit_probe(x, self.target(TRAIN).double().numpy(), self.kind, self.outputs)
        model = DownstreamModel(backbone, head.to(self.device), self.rep)
        return self.metrics(self.scores(model, VAL), self.scores(model, TEST)), model

    def run_finetune(self, run: RunFolder, resume: bool = False, log=info, progress: bool = True,
                     callbacks: list[Callback] = ()) -> tuple[dict[str, float], DownstreamModel]:
        """Backbone and head trained together by the one fit loop; the best-validation weights
        are scored."""
        t = self.cfg.train
        trainer = FinetuneTrainer(self)
        metric = SELECTION[self.kind]
        result = fit(trainer, run, t.epochs, t.patience, metric, maximize=not self.regression, resume=resume,
                     callbacks=[*make_loggers(t.log), *callbacks],
                     log=log, progress=progress)
        run.load_weights(trainer.model, self.device)
        final = self.metrics(self.scores(trainer.model, VAL), self.scores(trainer.model, TEST))
        final["best_epoch"] = result.best_epoch
        return final, trainer.model


# The validation metric that picks the best epoch, per task kind.
SELECTION = {"binary": "pr_auc", "multiclass": "macro_f1", "regression": "rmse"}


class FinetuneTrainer(OneModel):
    """One fine-tuning run for the fit loop: class-weighted BCE or cross-entropy (or MSE on
    standardised targets), AdamW, validation PR-AUC, macro-F1 (or RMSE) on the fixed validation rows."""

    def __init__(self, tuner: Finetuner):
        self.tuner, self.device, t = tuner, tuner.device, tuner.cfg.train
        backbone = tuner.build_backbone()  # seeds the global generator, so the head's init is fixed too
        self.model = DownstreamModel(backbone, mlp(t.model.channels, tuner.outputs, hidden=t.model.channels).to(
            self.device), tuner.rep)
        self.optimizer = adamw(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.ids, self.target = tuner.sets.ids[TRAIN], tuner.target(TRAIN)
        if tuner.regression:
            self.loss_fn = nn.MSELoss()
        elif tuner.kind == "multiclass":  # classes weighted inversely to their training counts
            counts = torch.bincount(self.target, minlength=tuner.outputs).float()
            weight = torch.where(counts > 0, len(self.target) / (tuner.outputs * counts.clamp(min=1)), 0.0)
            self.loss_fn = nn.CrossEntropyLoss(weight=weight.to(self.device))
        else:  # class imbalance: positives weighted by negatives / positives
            pos = float(self.target.sum())
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(self.target) - pos) / pos,
                                                                        device=self.device))

    def train_epoch(self, epoch: int, progress: bool = True) -> dict[str, float]:
        t, rep = self.tuner.cfg.train, self.tuner.rep
        self.model.train()
        torch.manual_seed(int(seeding.generator(t.seed, seeding.DOWNSTREAM_DROPOUT, epoch).initial_seed()))
        order = torch.randperm(len(self.ids), generator=seeding.generator(t.seed, seeding.DOWNSTREAM_SHUFFLE, epoch))
        order = order[: t.train_rows_per_epoch] if t.train_rows_per_epoch else order
        start, total = time.perf_counter(), 0.0
        batches = order.split(t.batch_size)
        for step, pos in enumerate(tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress)):
            lr = set_lr(self.optimizer, t, epoch, step, len(batches))
            gen = seeding.generator(t.seed, seeding.DOWNSTREAM_STEP, epoch, step)
            loss = self.loss_fn(self.model(rep.batch(self.ids[pos], TRAIN, gen).to(self.device)),
                                self.target[pos].to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            value = float(loss.detach())
            report_step(self, epoch, step, value)
            total += value * len(pos)
        seconds = time.perf_counter() - start
        return {"loss": total / len(order), "lr": lr, "seconds": seconds, "rows_per_s": len(order) / seconds}

    def validate(self) -> dict[str, float]:
        tuner = self.tuner
        score = selection_score(tuner.kind, tuner.scores(self.model, VAL), tuner.sets.y[VAL])
        return {SELECTION[tuner.kind]: -score if tuner.regression else score}


def finetune(cfg: FinetuneConfig | None, out: str | Path, prep: PreparedData | None = None, progress: bool = True,
             log=info, resume: bool = False, changes: dict | None = None, callbacks: list[Callback] = ()) -> dict:
    """Run one downstream configuration into the folder ``out``; returns final.json's content.
    With ``resume`` the run continues from its checkpoint, with its own config.yaml unless ``cfg``
    is given (``changes``: the settings it may change, such as more ``epochs``); probe and tree modes simply run again."""
    run = RunFolder(out)
    cfg = run.settings(cfg, resume, FinetuneConfig.from_dict, changes)
    run.check_data(data_digests(cfg.train.data, cfg.train.cache_dir), resume)
    start = time.perf_counter()
    tuner = Finetuner(cfg, prep)
    run.start({**asdict(cfg), "task": tuner.spec.name})
    if run.writer and cfg.mode not in NO_BACKBONE:  # what new rows are encoded with (relssl predict)
        save_preprocessing(run.path, tuner.prep)
    model = None
    if cfg.mode in GBDT_MODES:
        metrics = tuner.run_gbdt(graph=cfg.mode == "gbdt-graph")
    elif cfg.mode == "reference":
        metrics = tuner.run_reference()
    elif cfg.mode == "probe":
        metrics, model = tuner.run_probe()
        run.save_weights(model)
    else:
        metrics, model = tuner.run_finetune(run, resume, log, progress, callbacks)
    sets = tuner.sets
    final = {"task": tuner.spec.name, "mode": cfg.mode, "init": cfg.init, "label_fraction": cfg.label_fraction,
             # an entity task's trees are cut at its cut-off whatever --no-time-aware says
             "protocol": "causal" if cfg.train.time_aware or tuner.task is not None else "transductive",
             "train_labels": len(sets.ids[TRAIN]), "val_rows": len(sets.ids[VAL]), "test_rows": len(sets.ids[TEST]),
             # what turns the head's outputs into predictions (relssl.predict)
             "kind": tuner.kind, "target": tuner.spec.target, "outputs": tuner.outputs,
             "target_mean": tuner.mean, "target_std": tuner.std}
    if tuner.kind == "binary":
        final.update(positive_class=sets.positive, negative_class=sets.negative,
                     train_positives=int(sets.y[TRAIN].sum()))
    elif tuner.kind == "multiclass":
        final.update(classes=sets.classes)
    final.update(metrics)
    final["seconds"] = time.perf_counter() - start
    run.write_final(final)
    if run.writer:
        write_model_card(run.path, "finetune", cfg.train.data, final, str(tuner.device), tuner.spec.name)
    return final
