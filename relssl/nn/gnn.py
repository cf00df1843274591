"""Message passing over sampled neighbourhoods, using and updating edge (event row) embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from relssl.errors import RelsslError


def mlp(in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Sequential:
    hidden = hidden or out_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


@dataclass(frozen=True)
class Conv:
    """A message-passing layer of the CONVS registry: ``build(channels, degree_histogram)``;
    ``needs_degree`` asks the backbone for the training in-degree histogram (PNA's scalers)."""

    build: Callable[[int, Tensor | None], nn.Module]
    needs_degree: bool = False
    takes_pair: bool = False  # called as conv((x_src, x_dst), edge_index, e, size): states for x_dst's rows only


# PyG is imported where a layer is built: importing it costs 1.6 s (it loads torch._dynamo), 40 % of
# the start of every relssl command, most of which never build a GNN (--help, schema, a bad flag).
def gine(channels: int, deg: Tensor | None) -> nn.Module:
    from torch_geometric.nn import GINEConv

    return GINEConv(mlp(channels, channels), train_eps=True, edge_dim=channels)


def pna(channels: int, deg: Tensor | None) -> nn.Module:
    from torch_geometric.nn import PNAConv

    return PNAConv(channels, channels, aggregators=["mean", "min", "max", "std"],
                   scalers=["identity", "amplification", "attenuation"], deg=deg, edge_dim=channels, towers=1,
                   divide_input=False)


CONVS = {"gine": Conv(gine, takes_pair=True), "pna": Conv(pna, needs_degree=True)}


def make_conv(channels: int, kind: str, deg: Tensor | None) -> nn.Module:
    if kind not in CONVS:
        raise RelsslError(f"--gnn '{kind}': expected one of {', '.join(CONVS)}")
    return CONVS[kind].build(channels, deg)


class EdgeUpdatingLayer(nn.Module):
    """A CONVS node update (GINE, PNA) followed by an edge update from both endpoints (as in GINe).

    Node: h <- (h + relu(norm(conv(h, e)))) / 2.  Edge: e <- e + mlp([h_src, h_dst, e]) / 2.

    With ``reverse`` (Multi-GNN's reverse message passing), edges whose event enters the receiving
    node and edges whose event leaves it have separate convolutions, ``conv`` and ``conv_rev``,
    averaged as Multi-GNN's ``to_hetero(aggr="mean")`` does: in- and out-flows of money are
    different evidence, which one shared convolution can only tell apart through the edge features.
    """

    def __init__(self, channels: int, kind: str = "gine", deg: Tensor | None = None, reverse: bool = False):
        super().__init__()
        self.conv = make_conv(channels, kind, deg)
        if reverse:
            self.conv_rev = make_conv(channels, kind, deg)
        self.reverse = reverse
        self.takes_pair = CONVS[kind].takes_pair
        self.norm = nn.LayerNorm(channels)
        self.edge_mlp = mlp(3 * channels, channels)

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor, edge_dir: Tensor | None = None,
                num_dst: int | None = None, keep_edges: int | None = None) -> tuple[Tensor, Tensor]:
        """New states of the nodes ``h[:num_dst]`` (default all), which must hold every receiving
        node ``edge_index[1]``, and of the first ``keep_edges`` edges (default all; 0: none), whose
        ends must lie in it. ``edge_dir`` (1: the event enters the receiving node) is needed with
        ``reverse``."""
        num_dst = h.shape[0] if num_dst is None else num_dst
        if self.reverse:  # index_select: its backward is an index_add, a boolean mask's a slow index_put
            inward, outward = (edge_dir == 1).nonzero().squeeze(1), (edge_dir == 0).nonzero().squeeze(1)
            agg = (self._convolve(self.conv, h, edge_index.index_select(1, inward), e.index_select(0, inward), num_dst)
                   + self._convolve(self.conv_rev, h, edge_index.index_select(1, outward), e.index_select(0, outward),
                                    num_dst)) / 2
        else:
            agg = self._convolve(self.conv, h, edge_index, e, num_dst)
        h = (h[:num_dst] + torch.relu(self.norm(agg))) / 2
        keep_edges = e.shape[0] if keep_edges is None else keep_edges
        e = e[:keep_edges]
        if keep_edges:
            src, dst = edge_index[:, :keep_edges]
            ends = torch.cat([h.index_select(0, src), h.index_select(0, dst), e], dim=-1)
            e = e + self.edge_mlp(ends) / 2
        return h, e

    def _convolve(self, conv: nn.Module, h: Tensor, edge_index: Tensor, e: Tensor, num_dst: int) -> Tensor:
        if self.takes_pair:  # the node MLP runs on the receiving rows alone
            return conv((h, h[:num_dst]), edge_index, e, size=(h.shape[0], num_dst))
        return conv(h, edge_index, e)[:num_dst]


class TreeGNN(nn.Module):
    """Message passing from the leaves of per-seed sampled trees towards their roots.

    Only the roots' states are used. The trees' nodes come depth by depth, roots first, and each
    edge reaches a new node (its child), so the nodes up to depth k are a prefix of ``h``, as the
    edges of hops <= k are a prefix of the edges. Layer l of L therefore needs only the edges of
    hops <= L - l + 1, computes states only for the nodes up to depth L - l and updates only the
    edges the next layer reads; the last layer updates no edge. At fan-outs 8, 4 that skips the
    leaves (three quarters of the nodes) in the first layer and all but the roots in the second.
    The roots' states are those of running every layer on every node and edge (tested)."""

    def __init__(self, channels: int, layers: int, kind: str = "gine", deg: Tensor | None = None,
                 reverse: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(EdgeUpdatingLayer(channels, kind, deg, reverse) for _ in range(layers))

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor, edge_hop: Tensor,
                edge_dir: Tensor | None = None) -> Tensor:
        """[roots, channels] the roots' states (the first ``len(h) - len(edge_hop)`` nodes)."""
        num_layers = len(self.layers)
        roots = h.shape[0] - edge_hop.numel()
        # edges_up_to[k] = number of edges of hops <= k = number of non-root nodes up to depth k
        edges_up_to = torch.searchsorted(edge_hop, torch.arange(num_layers + 1, device=edge_hop.device),
                                         right=True).tolist()
        for i, layer in enumerate(self.layers):
            n, reached = edges_up_to[num_layers - i], edges_up_to[num_layers - i - 1]
            h, e = layer(h, edge_index[:, :n], e[:n], None if edge_dir is None else edge_dir[:n],
                         num_dst=roots + reached, keep_edges=reached if i < num_layers - 1 else 0)
        return h
