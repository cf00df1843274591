"""The fused per-row representation: [source node, target node, row] from a GNN and an FT-Transformer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_frame import TensorFrame

from relssl.data.prepare import PreparedData
from relssl.errors import RelsslError
from relssl.graph.batch import Batch, RelationContext
from relssl.graph.sampler import SampledSubgraph
from relssl.nn.gnn import CONVS, TreeGNN, mlp
from relssl.nn.row_encoder import (DenseRowEncoder, FlatRowEncoder, RowEncoder, column_encoder, embedding_rows,
                                   make_row_encoder)
from relssl.options import option


@dataclass
class ModelConfig:
    channels: int = option(32, "width of every token, node and edge state")
    row_encoder: str = option("ft-transformer", "row encoder: ft-transformer (attention over a row's cells), or mlp "
                                                "or resnet (dense layers over the concatenated cells: lighter)")
    row_layers: int = option(2, "layers of the row encoder (FT-Transformer layers, or MLP/ResNet blocks)")
    heads: int = option(4, "attention heads (must divide --channels)")
    dropout: float = option(0.0, "dropout; masking already regularises, and dropout costs ~6 %% of a CPU step")
    gnn: str = option("gine", f"GNN layer: {', '.join(CONVS)}")
    gnn_layers: int = option(2, "GNN layers (one per hop of --fanouts)")
    fanouts: list[int] = option(help="neighbours sampled per hop, e.g. 8,4 (chosen for 2 CPU cores)",
                                factory=lambda: [8, 4])
    # Multi-GNN's adaptations (Egressy et al. 2024), see docs/architecture.md:
    reverse_mp: bool = option(False, "GNN: separate convolutions for events entering and leaving a node (Multi-GNN)")
    ports: bool = option(False, "GNN: each event carries its causal port numbers at both endpoints (Multi-GNN)")
    ego_ids: bool = option(False, "GNN: mark tree nodes that are the seed's source or target entity (Multi-GNN)")
    node_age: bool = option(True, "database trees: each timed row carries its age at its seed's time (as "
                                  "RelBench's temporal encoding); an entity task's tree knows its cut-off only so")


PORT_EXACT = 32  # ports below this are embedded one by one, larger ones by their power of two
PORT_BUCKETS = 64


def port_bucket(port: Tensor) -> Tensor:
    """Embedding row of each port number. A port is an identity (siblings sent by one counterparty
    share it), so a node's first 32 counterparties keep exact, unrelated vectors, which log1p and a
    linear map would squeeze onto one line; beyond that only a hub's order of magnitude is kept."""
    magnitude = torch.frexp(port.double()).exponent - PORT_EXACT.bit_length()  # 0 for ports 32..63
    return torch.where(port < PORT_EXACT, port, PORT_EXACT + magnitude).clamp(max=PORT_BUCKETS - 1)


def ego_marks(sub: SampledSubgraph) -> Tensor:
    """[N, 2] whether each tree node is its tree's root source entity, and its root target entity:
    a path that returns to an endpoint (a cycle through the seed event) becomes visible."""
    entity, seed = sub.node_entity, sub.node_seed
    return torch.stack([entity == entity[seed], entity == entity[sub.num_seeds + seed]], 1)


@dataclass
class RowRepresentation:
    tokens: Tensor  # [B, C, d] per-cell outputs of the row encoder
    fused: Tensor  # [B, d] row + graph context
    graph: Tensor | None  # [B, 2d] source and target node states (a database: [B, d] the seed row's) from the GNN alone


def tree_degree_histogram(prep: PreparedData, fanouts: list[int]) -> Tensor:
    """PNA's in-degree histogram for sampled trees: a node receives min(degree, fan-out) messages,
    estimated from the training graph's degrees (leaves receive none)."""
    train = torch.from_numpy(prep.split == 0)
    n = prep.num_entities
    degree = torch.bincount(prep.src[train], minlength=n) + torch.bincount(prep.dst[train], minlength=n)
    received = torch.cat([degree.clamp(max=f) for f in fanouts] + [torch.zeros(1, dtype=torch.long)])
    return torch.bincount(received, minlength=max(fanouts) + 1)


class AgeEncoder(nn.Module):
    """A tree node's age at its seed's time (days; negative: a static row, which gets nothing) as
    log1p(days) and sinusoids of it at octave frequencies, projected to the state width: ages from
    minutes to decades stay distinguishable, and a row at the seed's time is age 0."""

    FREQUENCIES = 6

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("freq", 2.0 ** torch.arange(self.FREQUENCIES), persistent=False)
        self.proj = nn.Linear(1 + 2 * self.FREQUENCIES, channels)

    def forward(self, age: Tensor) -> Tensor:
        x = torch.log1p(age.clamp(min=0)).unsqueeze(-1)
        phase = x * self.freq
        out = self.proj(torch.cat([x, torch.sin(phase), torch.cos(phase)], dim=-1))
        return out * (age >= 0).unsqueeze(-1).to(out.dtype)


class Backbone(nn.Module):
    """Row encoder for the seed rows; a GNN over their sampled neighbourhoods, whose edges are
    the neighbour event rows (cheaply encoded with the same cell embeddings) and whose nodes are
    entities (their feature rows, or a learned constant when entities have no features)."""

    def __init__(self, prep: PreparedData, cfg: ModelConfig):
        super().__init__()
        d = cfg.channels
        self.cfg = cfg
        db = prep.database
        # A database's run with several pretext tables: the first one's row encoder is ``row``.
        first = db.tables[db.pretext[0]] if db is not None and db.pretext else prep.events
        self.row = make_row_encoder(cfg.row_encoder, first, d, cfg.row_layers, cfg.heads, cfg.dropout)
        self.has_graph = prep.has_context
        self.graph_channels = 2 * d if prep.has_graph else d  # source and target states, or the seed row's
        if prep.database is not None:
            self._relational(prep, cfg)
        elif self.has_graph:
            self.edge_rows = FlatRowEncoder(self.row.cells, d)
            self.edge_direction = nn.Embedding(2, d)
            if cfg.ports:  # the event's port at the receiving (parent) node and at the sending (child) node
                self.port_parent = nn.Embedding(PORT_BUCKETS, d)
                self.port_child = nn.Embedding(PORT_BUCKETS, d)
            if cfg.ego_ids:
                self.ego = nn.Parameter(torch.randn(2, d))  # root source mark, root target mark
            if prep.entities is not None:
                self.node_rows = FlatRowEncoder(column_encoder(prep.entities, d), d)
            else:
                self.node_const = nn.Parameter(torch.randn(d) * 0.02)
            deg = tree_degree_histogram(prep, cfg.fanouts) if CONVS[cfg.gnn].needs_degree else None
            self.gnn = TreeGNN(d, cfg.gnn_layers, cfg.gnn, deg, cfg.reverse_mp)
            self.fuse = mlp(3 * d, d)
        else:
            self.fuse = mlp(d, d)

    def _relational(self, prep: PreparedData, cfg: ModelConfig) -> None:
        """A database's trees: every node starts from a learned state of its table, plus, for
        non-root rows of tables with features, a flat encoding of the row's cells (the seed table's
        sharing the row encoder's cell embeddings): a root, the seed row itself, never sees its own
        cells through the graph. A learned vector per relation is the edge feature of a tree GNN."""
        db, d = prep.database, cfg.channels
        if CONVS[cfg.gnn].needs_degree or cfg.reverse_mp or cfg.ports or cfg.ego_ids:
            raise RelsslError("a database's trees take --gnn gine without --reverse-mp, --ports or --ego-ids "
                              "(those read an event graph)")
        pretext = db.pretext or [db.seed_table]
        self.seed_name = db.names[db.seed_table]
        self.extra_rows = nn.ModuleDict({db.names[t]: make_row_encoder(cfg.row_encoder, db.tables[t], d, cfg.row_layers,
                                                                  cfg.heads, cfg.dropout) for t in pretext[1:]})
        self.table_rows = nn.ModuleList(
            FlatRowEncoder(self.row_encoder(db.names[t]).cells, d) if t in pretext else
            FlatRowEncoder(column_encoder(enc, d), d) if enc is not None else nn.Identity()
            for t, enc in enumerate(db.tables))
        self.history_rows = nn.ModuleList(
            nn.Identity() if enc is None else FlatRowEncoder(column_encoder(enc, d), d) for enc in db.history)
        self.table_start = nn.Parameter(torch.randn(len(db.tables), d) * 0.02)
        if cfg.node_age:
            self.age = AgeEncoder(d)
        self.relation = nn.Embedding(2 * len(db.links), d)  # each foreign key, both directions
        self.gnn = TreeGNN(d, cfg.gnn_layers, cfg.gnn)
        self.fuse = mlp(2 * d, d)

    def encode_relations(self, context: RelationContext) -> Tensor:
        """[B, d] each seed row's state after message passing over its tree."""
        tree = context.tree
        h = self.table_start.index_select(0, tree.node_table)
        for t, encoder in enumerate(self.table_rows):
            if context.nodes[t] is not None:
                rows = encoder(context.tfs[t]).index_select(0, context.inverse[t])
                h = h.index_add(0, context.nodes[t], rows.to(h.dtype))  # autocast may give bf16 rows
        for t, encoder in enumerate(self.history_rows):
            if context.history_nodes[t] is not None:
                rows = encoder(context.history_tfs[t]).index_select(0, context.history_inverse[t])
                h = h.index_add(0, context.history_nodes[t], rows.to(h.dtype))
        if self.cfg.node_age and context.age is not None:
            h = h + self.age(context.age)
        h = self.gnn(h, tree.edge_index, embedding_rows(self.relation.weight, tree.edge_relation), tree.edge_hop)
        return h[:tree.num_seeds]

    def encode_graph(self, batch: Batch, ego_ids: bool = True) -> Tensor | None:
        """[B, 2d] states of each seed's source and target node after message passing. ``ego_ids``
        False leaves out the marks of the seed's endpoints (a task scoring other pairs than the
        trees' own, like link prediction's corrupted pairs, must not see them)."""
        if batch.graph is None:
            return None
        if isinstance(batch.graph, RelationContext):
            return self.encode_relations(batch.graph)
        g, sub = batch.graph, batch.graph.sub
        # index_select, not [] indexing: its backward is a fast index_add rather than index_put.
        e = (self.edge_rows(g.edge_tf).index_select(0, g.edge_inverse)
             + embedding_rows(self.edge_direction.weight, sub.edge_dir))
        if self.cfg.ports:
            bucket = port_bucket(sub.edge_port)
            e = (e + embedding_rows(self.port_parent.weight, bucket[:, 0])
                 + embedding_rows(self.port_child.weight, bucket[:, 1]))
        if g.node_tf is not None:
            h = self.node_rows(g.node_tf).index_select(0, g.node_inverse)
        else:
            h = self.node_const.expand(sub.node_entity.numel(), -1)
        if self.cfg.ego_ids and ego_ids:
            h = h + ego_marks(sub).to(h.dtype) @ self.ego
        h = self.gnn(h, sub.edge_index, e, sub.edge_hop, sub.edge_dir)
        b = sub.num_seeds
        return torch.cat([h[:b], h[b:2 * b]], dim=-1)

    def row_encoder(self, table: str | None = None) -> RowEncoder | DenseRowEncoder:
        """The row encoder of a pretext table of a database (default: the seed table's); ``row`` on
        an event table."""
        extra = getattr(self, "extra_rows", None)
        name = table or getattr(self, "seed_name", None)
        return extra[name] if extra is not None and name in extra else self.row

    def encode_rows(self, tf: TensorFrame, remove: Tensor | None, graph: Tensor | None,
                    table: str | None = None) -> RowRepresentation:
        tokens, cls = self.row_encoder(table)(tf, remove)
        fused = self.fuse(cls if graph is None else torch.cat([graph, cls], dim=-1))
        return RowRepresentation(tokens, fused, graph)

    def forward(self, batch: Batch, tf: TensorFrame | None = None, remove: Tensor | None = None) -> RowRepresentation:
        return self.encode_rows(batch.tf if tf is None else tf, remove, self.encode_graph(batch))


class TableModel:
    """The backbone as the tasks on one pretext table of a database see it: that table's rows go
    through its own row encoder; everything else (the graph, the other tables' encoders) is shared."""

    def __init__(self, backbone: Backbone, table: str):
        self.backbone, self.table = backbone, table

    def encode_rows(self, tf: TensorFrame, remove: Tensor | None, graph: Tensor | None) -> RowRepresentation:
        return self.backbone.encode_rows(tf, remove, graph, self.table)

    def row_encoder(self) -> RowEncoder | DenseRowEncoder:
        return self.backbone.row_encoder(self.table)

    def __call__(self, batch: Batch, tf: TensorFrame | None = None, remove: Tensor | None = None) -> RowRepresentation:
        return self.encode_rows(batch.tf if tf is None else tf, remove, self.backbone.encode_graph(batch))

    def __getattr__(self, name: str):
        return getattr(self.backbone, name)
