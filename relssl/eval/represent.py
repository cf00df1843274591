"""Task representations from a backbone: an event is its fused row representation (row + graph
context); an entity is the mean of its two sampled root states.

Edge tasks see, like pre-training, the graph of the event's own split with its time bound. Node
tasks see the graph of all events for every entity: the node splits (T-EDGE's given split, or a
random one) are not temporal, and restricting training entities to the training-period graph would
show them a different view than test entities (on T-EDGE, half of the phishing training nodes have
no event before the training cut-off). Node labels never enter the graph.

An entity task's example (an entity row at a cut-off time, relssl.data.entity_tasks) is the state
of that row after message passing over its tree, cut at the cut-off time whatever
``time_aware`` says: its label lies after that time, in rows the tree would otherwise reach.
"""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.data.prepare import PreparedData
from relssl.data.splits import TEST, TRAIN, VAL
from relssl.data.entity_tasks import TaskRows
from relssl.graph.batch import Batch, BatchBuilder
from relssl.eval.nodes import NodeBatchBuilder
from relssl.nn.backbone import Backbone
from relssl.train import seeding


class Representer:
    def __init__(self, prep: PreparedData, target: str, fanouts: list[int], time_aware: bool = True,
                 examples: TaskRows | None = None, entity: str | None = None):
        self.target, self.examples = target, examples
        if target == "entity":  # every row visible; each tree cut at its example's cut-off time
            everything = BatchBuilder(prep, TEST, fanouts, time_aware=True)
            self.entity_table = prep.database.names.index(entity)
            self.builders = {s: everything for s in (TRAIN, VAL, TEST)}
        elif target == "edge":
            self.builders = {s: BatchBuilder(prep, s, fanouts, time_aware) for s in (TRAIN, VAL, TEST)}
        else:
            everything = NodeBatchBuilder(prep, TEST, fanouts)
            self.builders = {s: everything for s in (TRAIN, VAL, TEST)}

    def keyed(self, seed: int) -> "Representer":
        """Draw every tree from its seed's key under ``seed``, not from the batch's generator: a
        row's representation then does not depend on which rows share its batch (inference)."""
        for builder in self.builders.values():
            (builder.builder if isinstance(builder, NodeBatchBuilder) else builder).keyed = seed
        return self

    def batch(self, ids: Tensor, split: int, generator: torch.Generator):
        """Seed events ``ids`` of ``split`` (their own event excluded from their trees), entities, or
        an entity task's examples."""
        if self.target == "entity":
            rows = torch.from_numpy(self.examples.entity[ids.numpy()])
            time = torch.from_numpy(self.examples.time[ids.numpy()])
            builder = self.builders[split]
            return Batch(rows, None, builder.tree_context(self.entity_table, rows, time, generator, root_cells=True,
                                                          keys=builder.row_keys(ids)), builder=builder)
        return self.builders[split](ids, generator)

    def __call__(self, model: Backbone, batch) -> Tensor:
        """[B, channels] representation of each seed."""
        if self.target == "edge":
            return model(batch).fused
        if self.target == "entity":
            return model.encode_graph(batch)
        states = model.encode_graph(batch)
        half = states.shape[1] // 2
        return (states[:, :half] + states[:, half:]) / 2

    @torch.no_grad()
    def embed(self, model: Backbone, ids: Tensor, split: int, batch_size: int, seed: int,
              device: torch.device, stream: int = seeding.DOWNSTREAM_EMBED) -> Tensor:
        """Representations of ``ids`` in eval mode, with fixed neighbour draws from ``seed``."""
        model.eval()
        parts = [self(model, self.batch(chunk, split, seeding.generator(seed, stream, split, step)).to(device)).cpu()
                 for step, chunk in enumerate(ids.split(batch_size))]
        return torch.cat(parts) if parts else torch.zeros(0, model.cfg.channels)
