"""`relssl bench`: throughput and memory of ingestion, sampling, pre-training and the bare backbone.

Each size runs in a fresh process so peak memory is that size's own. ``--epoch`` measures what a
user runs instead: generate a file, ingest it into the cache (then load it again, a cache hit),
and train MCM + LP with the default model for one epoch, reporting rows/s, epoch time, peak RSS
and the share of time in ingestion, sampling, forward, backward and optimiser.
Each size runs in a fresh process so peak memory is that size's own. `relssl bench --text DATA`
measures text columns instead: embedding throughput, cold vs cached preprocessing, and
pre-training rows/s with and without the text columns. `relssl bench --relational` times MCM on a
generated 3-table database (orders -> customers, products) read as rows linked by keys, against
its orders read as an event table between customers and products.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relssl.errors import RelsslError


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_device_memory(device) -> dict:
    """Peak CUDA memory allocated by tensors (empty on CPU, where peak RSS says it all)."""
    import torch

    if device.type != "cuda":
        return {}
    return {"peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20}


def bench_one(rows: int, steps: int, batch_size: int, seed: int = 0, device: str = "cpu",
              workers: int | None = None, precision: str = "fp32") -> dict:
    """Measure one data size: every figure from the same generated file and model."""
    import torch

    from relssl.data.aml_generator import write_aml
    from relssl.data.ibm_aml import read_ibm_aml
    from relssl.data.prepare import prepare
    from relssl.data.splits import TRAIN
    from relssl.eval.graph_features import bench_graph_features
    from relssl.train import seeding
    from relssl.train.pretrain import PretrainConfig, Pretrainer, device_clock

    out: dict = {"rows": rows, "threads": torch.get_num_threads(), "device": device}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        trans, _ = write_aml(Path(tmp), rows=rows, seed=seed)
        out["generate_rows_per_s"] = rows / (time.perf_counter() - t)
        t = time.perf_counter()
        data = read_ibm_aml(trans)
        out["read_rows_per_s"] = rows / (time.perf_counter() - t)
    t = time.perf_counter()
    prep = prepare(data, seed=seed)
    out["encode_rows_per_s"] = rows / (time.perf_counter() - t)
    # The gbdt-graph baseline's causal features of every event (one thread, as it runs).
    out["graph_features_rows_per_s"] = bench_graph_features(prep)["rows_per_s"]

    cfg = PretrainConfig(data="synthetic-aml", batch_size=batch_size, seed=seed, device=device, workers=workers,
                         precision=precision)
    trainer = Pretrainer(cfg, prep)
    clock = lambda: device_clock(trainer.device)  # noqa: E731
    train_rows = prep.rows(TRAIN)
    batches = [train_rows[torch.randperm(len(train_rows), generator=seeding.generator(seed, seeding.BENCH_ROWS, i))[:batch_size]]
               for i in range(steps + 1)]

    # Sampler alone: edges per second and its time per batch.
    builder = trainer.builders[TRAIN]
    t, edges = time.perf_counter(), 0
    for i, b in enumerate(batches):
        g = seeding.generator(seed, seeding.BENCH_SAMPLE, i)
        sub = builder.sampler.sample(prep.src[b], prep.dst[b], prep.time[b], g, exclude_edge=b)
        edges += sub.edge_id.numel()
    sample_s = (time.perf_counter() - t) / len(batches)
    out["sampler_edges_per_s"] = edges / (sample_s * len(batches))
    out["sampled_edges_per_batch"] = edges / len(batches)

    # The bare backbone (forward, backward and optimiser step on prebuilt, unmasked batches) and the
    # full pre-training step (sampling, masking, objective heads, optimiser), timed step by step in
    # alternating order: a machine whose speed drifts between runs (this one's by ±15 %) then slows
    # both alike, and their ratio does not depend on which ran first. Medians, the first step left out.
    built = [builder(b, seeding.generator(seed, seeding.BENCH_BUILD, i)).to(trainer.device) for i, b in enumerate(batches)]
    model, opt = trainer.model, trainer.optimizer
    model.train()

    def bare_backbone(i: int) -> None:
        opt.zero_grad()
        with trainer.autocast():
            loss = model(built[i]).fused.float().square().mean()
        loss.backward()
        opt.step()

    def full_step(i: int) -> None:
        loss, _ = trainer.step(batches[i], TRAIN, seeding.generator(seed, seeding.BENCH_STEP, i))
        opt.zero_grad()
        loss.backward()
        opt.step()

    seconds: dict = {bare_backbone: [], full_step: []}
    for i in range(len(batches)):
        for run in (bare_backbone, full_step) if i % 2 == 0 else (full_step, bare_backbone):
            t = clock()
            run(i)
            seconds[run].append(clock() - t)
    backbone_s, step_s = (statistics.median(seconds[run][1:]) for run in (bare_backbone, full_step))
    out["backbone_rows_per_s"] = batch_size / backbone_s
    out["pretrain_rows_per_s"] = batch_size / step_s
    out["pretrain_vs_backbone"] = backbone_s / step_s
    out["sampling_share_of_step"] = sample_s / step_s
    # The training loop: its input pipeline builds the next batches while a step computes (--workers).
    trainer.cfg.train_rows_per_epoch = batch_size * steps
    out["workers"] = trainer.workers
    out["loop_rows_per_s"] = trainer.train_epoch(1, progress=False)["rows_per_s"]
    out["peak_rss_mib"] = peak_rss_mib()
    out.update(peak_device_memory(trainer.device))
    return out


LOOP_ROWS = 100_000  # seed rows timed per --loop setting (10 to 100 steps)


def parse_loop(spec: str) -> list[tuple[int, int, str]]:
    """``--loop 'BATCH:WORKERS:PRECISION, ...'`` as (batch size, workers, precision) settings."""
    from relssl.train.pretrain import PRECISIONS

    settings = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        fields = part.split(":")
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit() or fields[2] not in PRECISIONS \
                or int(fields[0]) < 1:
            raise RelsslError(f"--loop '{part}': expected BATCH:WORKERS:PRECISION, e.g. 4096:4:bf16 (precision one of "
                              f"{', '.join(PRECISIONS)})")
        settings.append((int(fields[0]), int(fields[1]), fields[2]))
    if not settings:
        raise RelsslError("--loop: expected at least one BATCH:WORKERS:PRECISION setting")
    return settings


class UtilisationProbe:
    """The GPU's busy percentage (NVML, ``torch.cuda.utilization``) sampled every 0.2 s in a thread
    while a measurement runs; None where NVML is missing (no nvidia-ml-py) or on the CPU."""

    def __init__(self, device):
        import threading

        self.device, self.samples, self.stop = device, [], threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True) if device.type == "cuda" else None

    def sample(self) -> None:
        import torch

        while not self.stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no NVML here: the figure is left out, the measurement goes on
                return

    def __enter__(self):
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def generated_prep(rows: int, seed: int = 0):
    """``rows`` transactions from the AML generator, read and prepared (split, encoded) in memory."""
    from relssl.data.aml_generator import write_aml
    from relssl.data.ibm_aml import read_ibm_aml
    from relssl.data.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        trans, _ = write_aml(Path(tmp), rows=rows, seed=seed)
        return prepare(read_ibm_aml(trans), seed=seed)


def bench_loop(rows: int, settings: list[tuple[int, int, str]], seed: int = 0, device: str = "cpu") -> list[dict]:
    """The MCM + LP training loop (default model) on one generated data set of ``rows`` rows, for
    each (batch size, workers, precision): a warm-up epoch of 3 steps, then an epoch of about
    ``LOOP_ROWS`` seed rows (10 to 100 steps, fewer where the training rows run out) timed as a run
    trains (input pipeline, no phase synchronisation). Reports rows/s, the share of the epoch the
    step waited for its input, peak device memory, the process's peak RSS so far and the GPU's mean
    busy percentage."""
    import torch

    from relssl.train.pretrain import PretrainConfig, Pretrainer

    prep = generated_prep(rows, seed)
    results = []
    for batch_size, workers, precision in settings:
        cfg = PretrainConfig(data="synthetic-aml", objectives=["mcm", "lp"], batch_size=batch_size, seed=seed,
                             device=device, workers=workers, precision=precision, train_rows_per_epoch=3 * batch_size)
        trainer = Pretrainer(cfg, prep)
        trainer.train_epoch(1, progress=False)  # warm-up: allocator, kernels' first launches, lazy indexes
        cfg.train_rows_per_epoch = max(10, min(100, -(-LOOP_ROWS // batch_size))) * batch_size
        steps = len(trainer.epoch_batches(2)[0])  # fewer where the training rows run out
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        with UtilisationProbe(trainer.device) as probe:
            metrics = trainer.train_epoch(2, progress=False)
        out = {"rows": rows, "device": device, "threads": torch.get_num_threads(), "batch_size": batch_size,
               "workers": trainer.workers, "precision": cfg.precision, "steps": steps,
               "rows_per_s": metrics["rows_per_s"], "waiting_share": trainer.phase_seconds["sampling"] / metrics["seconds"],
               "loss": metrics["loss"], "process_peak_rss_mib": peak_rss_mib(), **peak_device_memory(trainer.device)}
        if probe.mean() is not None:
            out["gpu_busy_percent"] = probe.mean()
        results.append(out)
        print(f"done: batch {batch_size}, workers {workers}, {precision}: {out['rows_per_s']:,.0f} rows/s",
              file=sys.stderr)
        del trainer
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results


def bench_epoch(rows: int, max_steps: int | None, batch_size: int, seed: int = 0, device: str = "cpu",
                workers: int | None = None, precision: str = "fp32") -> dict:
    """One epoch of MCM + LP on ``rows`` generated transactions, from the CSV through the cache.

    With ``max_steps`` the epoch is cut short and its time extrapolated from the mean step
    (reported as such); ingestion is always measured in full.
    """
    import torch

    from relssl.data.cache import load_prepared
    from relssl.data.splits import TRAIN
    from relssl.train.pretrain import PretrainConfig, Pretrainer

    out: dict = {"rows": rows, "threads": torch.get_num_threads(), "device": device}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        # A child process, so that the generator's memory is not counted in this run's peak.
        subprocess.run([sys.executable, "-m", "relssl", "generate", "aml", "--rows", str(rows), "--seed", str(seed),
                        "--out", tmp], check=True, capture_output=True)
        out["generate_s"] = time.perf_counter() - t
        data = str(Path(tmp) / "Synthetic_Trans.csv")
        cfg = PretrainConfig(data=data, objectives=["mcm", "lp"], batch_size=batch_size, seed=seed, device=device,
                             cache_dir=str(Path(tmp) / "cache"), epochs=1, workers=workers, precision=precision)
        t = time.perf_counter()
        prep, _ = load_prepared(data, cache_dir=cfg.cache_dir)
        out["ingest_s"] = time.perf_counter() - t
        t = time.perf_counter()
        prep, hit = load_prepared(data, cache_dir=cfg.cache_dir)
        out["cache_hit_load_s"] = time.perf_counter() - t
        assert hit
        out["rss_after_ingest_mib"] = peak_rss_mib()
        t = time.perf_counter()
        trainer = Pretrainer(cfg, prep)
        out["setup_s"] = time.perf_counter() - t  # graphs (CSR per split), LP pair index, model
        out["workers"], out["precision"] = trainer.workers, precision
        train_rows = len(prep.rows(TRAIN))
        batches = -(-train_rows // batch_size)
        if max_steps and max_steps < batches:
            trainer.cfg.train_rows_per_epoch = max_steps * batch_size
        metrics = trainer.train_epoch(1, progress=False)
    steps = min(batches, max_steps or batches)
    out["train_rows"] = train_rows
    out["steps_measured"] = steps
    out["train_rows_per_s"] = metrics["rows_per_s"]
    measured = metrics["seconds"]
    out["epoch_train_s"] = measured * batches / steps
    out["epoch_extrapolated"] = steps < batches
    out["epoch_total_s"] = out["ingest_s"] + out["setup_s"] + out["epoch_train_s"]
    out["epoch_from_cache_s"] = out["cache_hit_load_s"] + out["setup_s"] + out["epoch_train_s"]  # a run's second time
    phases = {"ingestion": out["ingest_s"] + out["setup_s"],
              **{k: v * batches / steps for k, v in trainer.phase_seconds.items()}}
    if trainer.device.type == "cuda":  # phases untimed (a wait for the GPU each would cost the overlap):
        wait = phases["sampling"]      # the step's wait for its input, and the rest
        phases = {"ingestion": phases["ingestion"], "sampling": wait, "compute": out["epoch_train_s"] - wait}
    total = sum(phases.values())
    out.update({f"share_{k}": v / total for k, v in phases.items()})
    out["peak_rss_mib"] = peak_rss_mib()
    out.update(peak_device_memory(trainer.device))
    return out


def bench_text(data_name: str, steps: int, batch_size: int, seed: int = 0, device: str = "cpu") -> dict:
    """Text figures on one dataset, with a fresh text cache so the first preparation embeds."""
    import dataclasses

    import torch
    import torch_frame

    from relssl.data.datasets import load_dataset
    from relssl.data.prepare import prepare
    from relssl.data.splits import TRAIN
    from relssl.data.text import TextEmbedder, load_model
    from relssl.train import seeding
    from relssl.train.pretrain import PretrainConfig, Pretrainer

    out: dict = {"data": data_name, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        load_model(TextEmbedder().model)
        out["model_load_s"] = time.perf_counter() - t
        for run in ("first", "cached"):
            embedder = TextEmbedder(cache_dir=Path(cache), progress=False)
            t = time.perf_counter()
            data = load_dataset(data_name)
            prep = prepare(data, seed=seed, text=embedder)
            out[f"{run}_preprocess_s"] = time.perf_counter() - t
            if run == "first":
                texts = sum(r.texts for r in embedder.records)
                out["distinct_texts"] = texts
                out["embed_sentences_per_s"] = texts / sum(r.seconds for r in embedder.records)
    out["cached_speedup"] = out["first_preprocess_s"] / out["cached_preprocess_s"]
    text_cols = [c for c, st in data.col_stypes.items() if st == torch_frame.text_embedded]
    without = dataclasses.replace(data, col_stypes={c: st for c, st in data.col_stypes.items() if c not in text_cols})
    for label, variant in (("with_text", prep), ("without_text", prepare(without, seed=seed))):
        trainer = Pretrainer(PretrainConfig(data=data_name, objectives=["mcm", "am", "mv"], batch_size=batch_size,
                                            seed=seed, device=device), variant)
        rows = variant.rows(TRAIN)
        for i in range(steps + 1):
            if i == 1:
                t = time.perf_counter()
            b = rows[torch.randperm(len(rows), generator=seeding.generator(seed, seeding.BENCH_ROWS, i))[:batch_size]]
            loss, _ = trainer.step(b, TRAIN, seeding.generator(seed, seeding.BENCH_STEP, i))
            trainer.optimizer.zero_grad()
            loss.backward()
            trainer.optimizer.step()
        out[f"pretrain_rows_per_s_{label}"] = steps * min(batch_size, len(rows)) / (time.perf_counter() - t)
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def generated_database(rows: int, seed: int = 0, check: bool = True):
    """A 3-table database: ``rows`` orders (amount, channel, time) each linking one of rows/100
    customers (age, segment) and one of rows/500 products (price, category), popular ones more;
    its keys resolved and checked unless ``check`` is False."""
    import numpy as np
    import pandas as pd
    import torch_frame

    from relssl.data.database import Database, ForeignKey, Table

    rng = np.random.default_rng(seed)
    n_cust, n_prod = max(rows // 100, 10), max(rows // 500, 10)
    customers = pd.DataFrame({"customer_id": np.arange(n_cust), "age": rng.integers(18, 90, n_cust).astype(float),
                              "segment": rng.choice(["retail", "business", "vip"], n_cust)})
    products = pd.DataFrame({"product_id": np.arange(n_prod), "price": rng.lognormal(3, 1, n_prod),
                             "category": rng.choice([f"c{i}" for i in range(30)], n_prod)})
    popularity = lambda n: (rng.zipf(1.3, rows) - 1) % n  # noqa: E731  (the tail wraps around: no artificial last hub)
    orders = pd.DataFrame({"customer_id": popularity(n_cust), "product_id": popularity(n_prod),
                           "amount": rng.lognormal(2, 1, rows), "channel": rng.choice(["web", "app", "shop"], rows)})
    time = np.sort(rng.integers(1_600_000_000, 1_600_000_000 + 365 * 86400, rows))
    num, cat = torch_frame.numerical, torch_frame.categorical
    db = Database("generated", {
        "orders": Table("orders", orders, {"amount": num, "channel": cat},
                        foreign_keys=[ForeignKey(("customer_id",), "customers"), ForeignKey(("product_id",), "products")],
                        time=time),
        "customers": Table("customers", customers, {"age": num, "segment": cat}, primary_key=("customer_id",)),
        "products": Table("products", products, {"price": num, "category": cat}, primary_key=("product_id",)),
    })
    return db.check() if check else db


def bench_relational(rows: int, reading: str, steps: int, batch_size: int, seed: int = 0,
                     device: str = "cpu") -> dict:
    """MCM steps on the generated database read as rows linked by keys (``reading`` "database"), or
    on its orders alone as events between customer and product entities ("events")."""
    import torch

    from relssl.data.prepare import prepare, prepare_database
    from relssl.data.relational import RelationalData
    from relssl.data.splits import TRAIN
    from relssl.train import seeding
    from relssl.train.pretrain import PretrainConfig, Pretrainer, device_clock

    db = generated_database(rows, seed, check=False)
    total = sum(len(t) for t in db.tables.values())
    t = time.perf_counter()
    db.check()  # ingest: keys validated and resolved to row positions
    if reading == "database":
        prep = prepare_database(db, "orders", seed=seed)
    else:
        orders, customers = db.tables["orders"], db.tables["customers"]
        data = RelationalData("generated", orders.df, orders.col_stypes, time=orders.time,
                              src=db.links["orders", 0], dst=db.links["orders", 1] + len(customers),
                              num_entities=len(customers) + len(db.tables["products"]))
        prep = prepare(data, seed=seed)
    out = {"rows": rows, "reading": reading, "encode_rows_per_s": (total if reading == "database" else rows)
           / (time.perf_counter() - t)}
    trainer = Pretrainer(PretrainConfig(data="generated", batch_size=batch_size, seed=seed, device=device), prep)
    trainer.timed_phases = True
    train_rows = prep.rows(TRAIN)
    batches = [train_rows[torch.randperm(len(train_rows), generator=seeding.generator(seed, seeding.BENCH_ROWS, i))[:batch_size]]
               for i in range(steps + 1)]
    for i, b in enumerate(batches):
        if i == 1:
            trainer.phase_seconds = dict.fromkeys(trainer.phase_seconds, 0.0)
            start = device_clock(trainer.device)
        trainer.train_step(b, 1, i)
    seconds = device_clock(trainer.device) - start
    out["pretrain_rows_per_s"] = batch_size * steps / seconds
    out["sampling_share_of_step"] = trainer.phase_seconds["sampling"] / seconds
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def format_table(results: list[dict]) -> str:
    keys = [k for k in results[0] if k != "rows"]
    lines = ["| figure | " + " | ".join(f"{r['rows']:,} rows" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for k in keys:
        cells = [r[k] if isinstance(r[k], str) else f"{r[k]:,.2f}" if isinstance(r[k], float) and r[k] < 10
                 else f"{r[k]:,.0f}" for r in results]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_sizes(spec: str) -> list[int]:
    """``--rows``: comma-separated data sizes, each a positive integer."""
    try:
        sizes = [int(s) for s in spec.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise RelsslError(f"--rows {spec}: expected comma-separated positive numbers of rows, e.g. 100000,1000000")
    return sizes


def run_single(argv: list[str]) -> dict:
    """One measurement in a fresh process (``relssl bench ... --single``): its JSON figures, or its
    own one-line error."""
    proc = subprocess.run([sys.executable, "-m", "relssl", "bench", "--single", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise RelsslError(f"relssl bench {' '.join(argv)}: {lines[-1].removeprefix('relssl: error: ')}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cmd_bench(args: argparse.Namespace) -> None:
    sizes = parse_sizes(args.rows)
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size)):
        if value < 1:
            raise RelsslError(f"{flag} {value}: expected a positive integer")
    if args.relational:
        rows = sizes[0]
        if rows < 1000:
            raise RelsslError(f"--rows {rows}: expected at least 1,000 rows")
        if args.single:
            print(json.dumps(bench_relational(rows, args.reading, args.steps, args.batch_size, device=args.device)))
            return
        results = [run_single(["--relational", "--reading", reading, "--rows", str(rows), "--steps", str(args.steps),
                               "--batch-size", str(args.batch_size), "--device", args.device])
                   for reading in ("events", "database")]
        print("| figure | orders as events | the database |\n|---|---|---|")
        for k in ("encode_rows_per_s", "pretrain_rows_per_s", "sampling_share_of_step", "peak_rss_mib"):
            print(f"| {k} | " + " | ".join(f"{r[k]:,.2f}" if r[k] < 10 else f"{r[k]:,.0f}" for r in results) + " |")
        ratio = results[1]["pretrain_rows_per_s"] / results[0]["pretrain_rows_per_s"]
        print(f"\n{rows:,} orders; the database pre-trains at {ratio:.2f}x the rows/s of its orders read as events")
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
        return
    if args.text:
        result = bench_text(args.text, args.steps, args.batch_size, device=args.device)
        print("| figure | value |\n|---|---|")
        for k, v in result.items():
            print(f"| {k} | {v:,.2f} |" if isinstance(v, float) else f"| {k} | {v} |")
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return
    if args.loop:
        if args.epoch:
            raise RelsslError("--loop and --epoch are two measurements: give one")
        settings = parse_loop(args.loop)
        results = bench_loop(sizes[0], settings, device=args.device)
        print("| batch | workers | precision | rows/s | waiting for input | peak CUDA MiB | GPU busy % |\n"
              "|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['batch_size']} | {r['workers']} | {r['precision']} | {r['rows_per_s']:,.0f} | "
                  f"{r['waiting_share']:.0%} | {r.get('peak_cuda_mib', float('nan')):,.0f} | "
                  f"{r.get('gpu_busy_percent', float('nan')):.0f} |")
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
        return
    if args.single:
        result = (bench_epoch(sizes[0], args.max_steps, args.batch_size, device=args.device, workers=args.workers,
                              precision=args.precision) if args.epoch
                  else bench_one(sizes[0], args.steps, args.batch_size, device=args.device, workers=args.workers,
                                 precision=args.precision))
        print(json.dumps(result))
        return
    results = []
    for rows in sizes:
        extra = ["--epoch", *(["--max-steps", str(args.max_steps)] if args.max_steps else [])] if args.epoch else []
        pipeline = [*(["--workers", str(args.workers)] if args.workers is not None else []), "--precision", args.precision]
        results.append(run_single(["--rows", str(rows), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                                   "--device", args.device, *pipeline, *extra]))
        print(f"done: {rows:,} rows", file=sys.stderr)
    table = format_table(results)
    print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
