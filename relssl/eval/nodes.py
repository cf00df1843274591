"""Mini-batches of entities (nodes) with their sampled neighbourhoods, for node tasks and node
embeddings. The backbone encodes seed *edges*; an entity is passed as both endpoints of a
pseudo seed edge, so ``Backbone.encode_graph`` returns two independently sampled root states of
the same entity (with ego ids, every return to the entity carries both the source and the target
mark)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from relssl.data.prepare import PreparedData
from relssl.graph.batch import BatchBuilder, GraphContext


@dataclass
class NodeBatch:
    nodes: Tensor  # [B] entity ids (the roots)
    graph: GraphContext  # the only field Backbone.encode_graph reads

    def to(self, device) -> "NodeBatch":
        return NodeBatch(self.nodes.to(device), self.graph.to(device))


class NodeBatchBuilder:
    """Trees around entities in the graph of the events of splits <= ``split``, bounded by that
    graph alone (no per-seed time bound: the latest visible time), with nothing excluded."""

    def __init__(self, prep: PreparedData, split: int, fanouts: list[int]):
        self.prep = prep
        self.builder = BatchBuilder(prep, split, fanouts, time_aware=False)

    def __call__(self, nodes: Tensor, generator: torch.Generator) -> NodeBatch:
        sub = self.builder.sampler.sample(nodes, nodes, None, generator, keys=self.builder.row_keys(nodes))
        return NodeBatch(nodes, self.builder.context(sub))
