"""Mini-batches of seed rows with their sampled, time-aware neighbourhoods."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import Tensor
from torch_frame import TensorFrame
from torch_frame.data import MultiEmbeddingTensor

from relssl.data.prepare import PreparedData
from relssl.graph.relations import RelationGraph, RelationTree
from relssl.graph.sampler import IncidenceCSR, NeighborSampler, SampledSubgraph, combine


@dataclass
class GraphContext:
    sub: SampledSubgraph
    edge_tf: TensorFrame  # the distinct neighbour event rows of the batch
    edge_inverse: Tensor  # [E] sampled edge -> row of edge_tf
    node_tf: TensorFrame | None  # the distinct entities of the batch, when entities have features
    node_inverse: Tensor | None  # [N] tree node -> row of node_tf

    def to(self, device) -> "GraphContext":
        return GraphContext(self.sub.to(device), self.edge_tf.to(device), self.edge_inverse.to(device),
                            None if self.node_tf is None else self.node_tf.to(device),
                            None if self.node_inverse is None else self.node_inverse.to(device))


@dataclass
class RelationContext:
    """A database batch's trees and, per table with features, its distinct non-root rows; per table
    with labels_as_history, the same for its nodes earlier than their seed and their labels."""

    tree: RelationTree
    nodes: list[Tensor | None]  # per table: the tree nodes of that table, roots left out (None: none, or no features)
    tfs: list[TensorFrame | None]  # per table: the distinct rows of those nodes
    inverse: list[Tensor | None]  # per table: node -> row of tfs[table]
    history_nodes: list[Tensor | None] = field(default_factory=list)
    history_tfs: list[TensorFrame | None] = field(default_factory=list)
    history_inverse: list[Tensor | None] = field(default_factory=list)
    age: Tensor | None = None  # [N] days from each node's row to its seed's time (-1: a static row); None: no cut

    def to(self, device) -> "RelationContext":
        def move(items):
            return [None if x is None else x.to(device) for x in items]

        return RelationContext(self.tree.to(device), move(self.nodes), move(self.tfs), move(self.inverse),
                               move(self.history_nodes), move(self.history_tfs), move(self.history_inverse),
                               None if self.age is None else self.age.to(device))


@dataclass
class Batch:
    rows: Tensor  # [B] event row ids (seeds)
    tf: TensorFrame | None  # the seed rows, uncorrupted (None: seeds of a table without features)
    graph: GraphContext | RelationContext | None
    # Work that several objectives share within one step (e.g. one masked forward for MCM and MV).
    cache: dict = field(default_factory=dict)
    builder: "BatchBuilder | None" = None  # what sampled it: a task that needs a view of its own asks it
    # objective -> what its ``prepare`` drew and sampled ahead of the step (relssl.train.pipeline)
    prepared: dict = field(default_factory=dict)

    def to(self, device) -> "Batch":
        return Batch(self.rows.to(device), None if self.tf is None else self.tf.to(device),
                     None if self.graph is None else self.graph.to(device),
                     builder=self.builder, prepared={k: to_device(v, device) for k, v in self.prepared.items()})


def take_rows(tf: TensorFrame, rows: Tensor) -> TensorFrame:
    """``tf[rows]``, gathered with ``index_select``: pytorch-frame's indexing takes the general
    advanced-indexing path, 2.4x slower for a batch's 25,000 neighbour rows of a million (measured),
    and a step gathers such rows on every batch."""
    feats = {}
    for stype, feat in tf.feat_dict.items():
        if isinstance(feat, Tensor):
            feats[stype] = feat.index_select(0, rows)
        elif isinstance(feat, MultiEmbeddingTensor):
            feats[stype] = MultiEmbeddingTensor(num_rows=len(rows), num_cols=feat.num_cols,
                                                values=feat.values.index_select(0, rows), offset=feat.offset)
        else:  # nested (multicategorical) cells: pytorch-frame's own row selection
            feats[stype] = feat[rows]
    return TensorFrame(feats, tf.col_names_dict, None if tf.y is None else tf.y.index_select(0, rows),
                       num_rows=None if feats else len(rows))  # a frame without columns keeps its row count


def unique_inverse(values: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.unique(values, return_inverse=True)`` of a CPU tensor, through numpy: torch's CPU sort
    is 2.5x slower on a batch's 25,000 edge ids (measured), and every batch deduplicates them."""
    rows, inverse = np.unique(values.numpy(), return_inverse=True)
    return torch.from_numpy(rows), torch.from_numpy(inverse.reshape(-1)).long()


def to_device(x, device):
    """Tensors and anything with ``.to`` (frames, contexts, batches), alone or in tuples and lists."""
    if x is None:
        return None
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device) for v in x)
    return x.to(device)


class BatchBuilder:
    """Gathers seed rows and samples their neighbourhood in the graph visible to one split.

    The graph of split s holds the events of splits up to s (train sees train; val sees
    train+val; test sees all), and, when time-aware, only events at or before each seed.
    A seed's own event never appears in its neighbourhood.
    """

    def __init__(self, prep: PreparedData, split: int, fanouts: list[int], time_aware: bool = True):
        self.prep = prep
        self.visible = torch.from_numpy((prep.split <= split).nonzero()[0])  # the events of this split's graph
        self.sampler = self.relations = None
        self.fanouts, self.time_aware = fanouts, time_aware and prep.time is not None
        # A run seed: every tree's draws come from its seed row's key (``row_keys``), whatever the
        # batch holds (inference; relssl.graph.sampler.keyed_uniform). None: from the step's generator.
        self.keyed: int | None = None
        if prep.database is not None:
            db = prep.database
            self.relations = RelationGraph(db.names, db.num_rows, db.times, db.links, db.visible(split, prep.split))
        if prep.has_graph:
            graph = IncidenceCSR(prep.src, prep.dst, prep.num_entities, prep.time, self.visible)
            self.sampler = NeighborSampler(graph, fanouts, time_aware=time_aware and prep.time is not None)

    def row_keys(self, rows: Tensor) -> Tensor | None:
        """Each seed row's key under ``keyed`` (None when draws come from the generator)."""
        return None if self.keyed is None else combine(self.keyed, rows.long())

    def __call__(self, rows: Tensor, generator: torch.Generator) -> Batch:
        """The seed rows and, with a graph, both endpoints' neighbourhoods (the seed event hidden)."""
        tf = take_rows(self.prep.events.tf, rows)
        if self.relations is not None:
            return Batch(rows, tf, self.relation_context(rows, generator), builder=self)
        if self.sampler is None:
            return Batch(rows, tf, None, builder=self)
        prep = self.prep
        sub = self.sampler.sample(prep.src[rows], prep.dst[rows], None if prep.time is None else prep.time[rows],
                                  generator, exclude_edge=rows, keys=self.row_keys(rows))
        return Batch(rows, tf, self.context(sub), builder=self)

    def context(self, sub: SampledSubgraph) -> GraphContext:
        """A sampled subgraph with the feature rows of its events and entities."""
        edge_rows, edge_inverse = unique_inverse(sub.edge_id)
        node_tf = node_inverse = None
        if self.prep.entities is not None:
            node_rows, node_inverse = unique_inverse(sub.node_entity)
            node_tf = take_rows(self.prep.entities.tf, node_rows)
        return GraphContext(sub, take_rows(self.prep.events.tf, edge_rows), edge_inverse, node_tf, node_inverse)

    def relation_context(self, rows: Tensor, generator: torch.Generator) -> RelationContext:
        """Trees around the seed rows of the database's seed table, cut off at each row's time."""
        time = None if self.prep.time is None else self.prep.time[rows]
        return self.tree_context(self.prep.database.seed_table, rows, time if self.time_aware else None, generator,
                                 label_time=time, keys=self.row_keys(rows))

    def tree_context(self, table: int, rows: Tensor, time: Tensor | None, generator: torch.Generator,
                     hide: tuple[int, Tensor] | None = None, drop_at_root: tuple[int, ...] = (),
                     root_cells: bool = False, label_time: Tensor | None = None,
                     keys: Tensor | None = None) -> RelationContext:
        """Trees around ``rows`` of ``table`` cut off at ``time`` (relssl.graph.relations.RelationGraph.sample's
        ``hide`` and ``drop_at_root``); ``root_cells``: the roots' own cells are node features too (a
        row scored as a candidate, not one whose cells are a task's targets). Labels kept as history
        are those known (at their row's time, or its label time) strictly before ``label_time``
        (default ``time``)."""
        db = self.prep.database
        tree = self.relations.sample(table, rows, time, self.fanouts, generator, hide, drop_at_root, keys)
        label_time = time if label_time is None else label_time
        context = RelationContext(tree, [], [], [])
        if time is not None:
            context.age = torch.full((tree.num_nodes,), -1.0)
        is_root = torch.arange(tree.num_nodes) < tree.num_seeds
        for t, enc in enumerate(db.tables):
            in_table = tree.node_table == t
            if time is not None and db.times[t] is not None:
                at = in_table.nonzero().squeeze(1)
                context.age[at] = (time[tree.node_seed[at]] - db.times[t][tree.node_row[at]]).float() / 86400
            at = (in_table & (~is_root | root_cells)).nonzero().squeeze(1) if enc is not None else in_table[:0]
            self._gather(enc, tree, at, context.nodes, context.tfs, context.inverse)
            history = db.history[t] if db.history and label_time is not None else None
            if history is not None:  # labels only of rows strictly earlier than the node's seed
                at = (in_table & ~is_root).nonzero().squeeze(1)
                known_at = db.label_times[t] if db.label_times and db.label_times[t] is not None else db.times[t]
                at = at[known_at[tree.node_row[at]] < label_time[tree.node_seed[at]]]
                if t in db.history_known:  # and whose labels the run may read
                    at = at[db.history_known[t][tree.node_row[at]]]
            self._gather(history, tree, at, context.history_nodes, context.history_tfs, context.history_inverse)
        return context

    @staticmethod
    def _gather(enc, tree: RelationTree, at: Tensor, nodes: list, tfs: list, inverse: list) -> None:
        """The distinct rows of the tree nodes ``at`` (one table's) and each node's index among them."""
        table_rows, inv = (None, None) if enc is None or not len(at) else unique_inverse(tree.node_row[at])
        nodes.append(None if inv is None else at)
        tfs.append(None if inv is None else take_rows(enc.tf, table_rows))
        inverse.append(inv)

    @cached_property
    def events_by_time(self) -> tuple[Tensor, Tensor | None]:
        """The events of this split's graph in time order, and their times (None without times)."""
        if self.prep.time is None:
            return self.visible, None
        times, order = torch.sort(self.prep.time[self.visible], stable=True)
        return self.visible[order], times
