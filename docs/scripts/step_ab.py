"""A speed change's pre-training step before and after, in one process: each step is timed under
both versions in alternating order (this machine's speed drifts by ±15 % between runs, more than
a change), on the same seed rows and draws. The "before" code is loaded from an older checkout
and swapped in where the change made it:

- ``--change assembly`` (2026-12-01, before = 641e104~1): the sampler module (plain-indexing
  gathers, unsorted searches), ``torch.unique`` with pytorch-frame's row indexing, and
  pytorch-frame's per-cell embeddings summed in the neighbour-row encoder;
- ``--change backbone`` (2026-12-01, before = cd4cd2d): the tree GNN's layers on every node and
  edge, ``nn.Embedding`` lookups and their backward, pytorch-frame's timestamp encoder.

Usage: git worktree add /tmp/before 641e104~1   (or cd4cd2d for --change backbone)
       python docs/scripts/step_ab.py /tmp/before --change assembly [--rows 1000000] [--steps 15]
       [--rounds 4] [--objectives mcm] [--threads 2]"""
import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

import relssl.graph.batch as batch_module
import relssl.nn.row_encoder as row_encoder
from relssl.bench import generated_prep
from relssl.data.splits import TRAIN
from relssl.train import seeding
from relssl.train.pretrain import PretrainConfig, Pretrainer

parser = argparse.ArgumentParser()
parser.add_argument("before", type=Path, help="a checkout of the code before the change")
parser.add_argument("--change", choices=["assembly", "backbone"], required=True)
parser.add_argument("--rows", type=int, default=1_000_000)
parser.add_argument("--steps", type=int, default=15)
parser.add_argument("--rounds", type=int, default=4)
parser.add_argument("--objectives", default="mcm")
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)


def load_before(path: str):
    """The before checkout's module at ``path`` (e.g. relssl/nn/gnn.py), beside today's."""
    name = "before_" + path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, args.before / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


prep = generated_prep(args.rows)
trainer = Pretrainer(PretrainConfig(data="synthetic-aml", batch_size=512, seed=0, device="cpu", workers=0,
                                    objectives=args.objectives.split(",")), prep)
builder, model = trainer.builders[TRAIN], trainer.model


def assembly_versions():
    before_sampler = load_before("relssl/graph/sampler.py")
    after_sampler = builder.sampler
    graph = before_sampler.IncidenceCSR.__new__(before_sampler.IncidenceCSR)
    graph.__dict__.update(after_sampler.graph.__dict__)  # the same lists and indexes
    samplers = {"before": before_sampler.NeighborSampler(graph, after_sampler.fanouts, after_sampler.time_aware),
                "after": after_sampler}

    def context_before(self, sub):
        edge_rows, edge_inverse = torch.unique(sub.edge_id, return_inverse=True)
        return batch_module.GraphContext(sub, self.prep.events.tf[edge_rows], edge_inverse, None, None)

    def flat_before(self, tf):
        cells, _ = self.cells(tf)
        return self.proj(cells.sum(1))

    contexts = {"before": context_before, "after": batch_module.BatchBuilder.context}
    flats = {"before": flat_before, "after": row_encoder.FlatRowEncoder.forward}

    def use(version: str) -> None:
        builder.sampler = samplers[version]
        batch_module.BatchBuilder.context = contexts[version]
        row_encoder.FlatRowEncoder.forward = flats[version]
    return use


def backbone_versions():
    """The model's modules take the before checkout's classes (same parameters, same attributes)."""
    before = {"gnn": load_before("relssl/nn/gnn.py"), "rows": load_before("relssl/nn/row_encoder.py"),
              "backbone": load_before("relssl/nn/backbone.py")}
    swapped = [(model, "backbone", "Backbone"), (model.edge_rows, "rows", "FlatRowEncoder"),
               (model.gnn, "gnn", "TreeGNN")] + [(layer, "gnn", "EdgeUpdatingLayer") for layer in model.gnn.layers]
    classes = {"after": [type(module) for module, _, _ in swapped],
               "before": [getattr(before[source], name) for _, source, name in swapped]}

    def use(version: str) -> None:
        for (module, _, _), cls in zip(swapped, classes[version]):
            module.__class__ = cls
    return use


use = {"assembly": assembly_versions, "backbone": backbone_versions}[args.change]()
train_rows = prep.rows(TRAIN)
seeds = [train_rows[torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(i))[:512]]
         for i in range(args.steps)]
optimizer = trainer.optimizer


def build(i):
    return trainer.build(seeds[i], TRAIN, seeding.generator(0, seeding.BENCH_STEP, i))


def backbone(batch):
    optimizer.zero_grad()
    model(batch).fused.float().square().mean().backward()
    optimizer.step()


def step(i):
    loss, _ = trainer.step(seeds[i], TRAIN, seeding.generator(0, seeding.BENCH_STEP, i))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


versions = ("before", "after")
built = {}
for version in versions:
    use(version)
    built[version] = [build(i) for i in range(args.steps)]
    backbone(built[version][0])
    step(0)  # warm-up
times = {(version, part): [] for version in versions for part in ("build", "backbone", "step")}
for r in range(args.rounds):
    for i in range(args.steps):
        for version in versions if (i + r) % 2 == 0 else versions[::-1]:
            use(version)
            for part, run in (("build", lambda: build(i)), ("backbone", lambda: backbone(built[version][i])),
                              ("step", lambda: step(i))):
                t = time.perf_counter()
                run()
                times[(version, part)].append(time.perf_counter() - t)

median = {key: statistics.median(values) * 1e3 for key, values in times.items()}
print(f"{args.rows:,} rows, {args.objectives}, batch 512, {args.threads} threads, "
      f"{args.rounds} x {args.steps} steps each, medians\n")
print("| ms per step | before | after | after / before |\n|---|---|---|---|")
for part in ("build", "backbone", "step"):
    print(f"| {part} | {median[('before', part)]:.1f} | {median[('after', part)]:.1f} | "
          f"{median[('after', part)] / median[('before', part)]:.2f} |")
ratio = {v: median[(v, "backbone")] / median[(v, "step")] for v in versions}
print(f"| step's rows/s / backbone's | {ratio['before']:.3f} | {ratio['after']:.3f} | |")
