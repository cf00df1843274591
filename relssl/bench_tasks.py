"""`relssl bench-tasks`: the cost of each pretext task and each combiner, as full training steps.

Every configuration trains on the same prepared data and the same seed batches, so the ratios
isolate the task or combiner: objectives relative to MCM alone, combiners relative to `sum` with
the same tasks.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

OBJECTIVE_SETS = ["mcm", "am", "mv", "lp", "ctr", "dae", "mcm,mv", "mcm,mv,am,lp"]
TASK_SETS = ["mcm,lp", "mcm,mv,am,lp"]
COMBINERS = ["sum", "uw", "moco", "pcgrad", "cagrad"]  # weighted costs what sum costs


def time_steps(prep, objectives: str, combiner: str, steps: int, batch_size: int, seed: int,
               device: str = "cpu") -> float:
    """Seconds per training step (sampling, forward, combiner, backward, optimiser), after one warm-up."""
    from relssl.data.splits import TRAIN
    from relssl.train.pretrain import PretrainConfig, Pretrainer, device_clock

    cfg = PretrainConfig(data="bench", objectives=objectives.split(","), combiner=combiner,
                         batch_size=batch_size, seed=seed, device=device)
    trainer = Pretrainer(cfg, prep)
    rows = prep.rows(TRAIN)
    batches = rows[:batch_size * (steps + 1)].split(batch_size)
    for step, batch in enumerate(batches):
        if step == 1:
            start = device_clock(trainer.device)
        trainer.train_step(batch, 1, step)
    return (device_clock(trainer.device) - start) / (len(batches) - 1)


def repeated_pairs(num_events: int = 200_000, num_pairs: int = 60, seed: int = 0):
    """Events between a few pairs that repeat thousands of times (like scheduled flights between
    airports), with a little other traffic: the case where hiding a seed's pair from link
    prediction's neighbourhoods used to dominate the step."""
    import numpy as np
    import pandas as pd
    import torch_frame

    from relssl.data.relational import RelationalData

    rng = np.random.default_rng(seed)
    ends = rng.choice(400, size=(num_pairs, 2), replace=False)  # 2 * num_pairs distinct entities, <= 400
    pick = rng.integers(0, num_pairs, num_events)
    src, dst = ends[pick, 0].copy(), ends[pick, 1].copy()
    other = rng.random(num_events) < 0.05  # a little traffic outside the pairs
    src[other], dst[other] = rng.integers(0, 400, (2, int(other.sum())))
    time = np.sort(rng.integers(1_600_000_000, 1_600_000_000 + 90 * 86400, num_events))
    events = pd.DataFrame({"amount": rng.lognormal(3, 1, num_events), "kind": rng.choice(["a", "b", "c"], num_events)})
    return RelationalData(name="repeated-pairs", events=events,
                          col_stypes={"amount": torch_frame.numerical, "kind": torch_frame.categorical},
                          time=time, src=src.astype(np.int64), dst=dst.astype(np.int64), num_entities=400)


def table(title: str, rows: list[tuple[str, float, float]]) -> str:
    lines = [f"| {title} | ms / step | rows / s | relative |", "|---|---|---|---|"]
    lines += [f"| {name} | {1000 * s:,.0f} | {rel_rows:,.0f} | {ratio:.2f}x |" for name, s, rel_rows, ratio in rows]
    return "\n".join(lines)


def cmd_bench_tasks(args: argparse.Namespace) -> None:
    import torch

    from relssl.data.datasets import load_dataset
    from relssl.data.prepare import prepare

    prep = prepare(load_dataset(args.data), seed=args.seed)
    figures: dict = {"data": args.data, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                     "device": args.device, "objectives": {}, "combiners": {}}

    def seconds(objectives: str, combiner: str) -> float:
        return time_steps(prep, objectives, combiner, args.steps, args.batch_size, args.seed, args.device)

    for objectives in filter(None, args.objectives.split(";")):
        figures["objectives"][objectives] = seconds(objectives, "sum")
    for tasks in filter(None, args.task_sets.split(";")):
        figures["combiners"][tasks] = {c: seconds(tasks, c) for c in args.combiners.split(",")}
    if args.repeated_pairs:
        pairs = prepare(repeated_pairs(), seed=args.seed)
        figures["repeated_pairs"] = {o: time_steps(pairs, o, "sum", args.steps, args.batch_size, args.seed, args.device)
                                     for o in ("mcm", "mcm,lp")}
    base = figures["objectives"].get("mcm") or next(iter(figures["objectives"].values()))
    print(table("objectives (sum)", [(name, s, args.batch_size / s, s / base)
                                     for name, s in figures["objectives"].items()]))
    for tasks, by_combiner in figures["combiners"].items():
        print()
        ref = by_combiner.get("sum") or next(iter(by_combiner.values()))
        print(table(f"combiner, tasks {tasks}", [(c, s, args.batch_size / s, s / ref) for c, s in by_combiner.items()]))
    if "repeated_pairs" in figures:
        print()
        by_set = figures["repeated_pairs"]
        print(table("repeated pairs (200,000 events, 60 pairs)",
                    [(o, t, args.batch_size / t, t / by_set["mcm"]) for o, t in by_set.items()]))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
