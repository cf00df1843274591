"""Message passing over sampled neighbourhoods, using and updating edge (event row) embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, PNAConv

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


CONVS = {
    "gine": Conv(lambda channels, deg: GINEConv(mlp(channels, channels), train_eps=True, edge_dim=channels)),
    "pna": Conv(lambda channels, deg: PNAConv(channels, channels, aggregators=["mean", "min", "max", "std"],
                                              scalers=["identity", "amplification", "attenuation"], deg=deg,
                                              edge_dim=channels, towers=1, divide_input=False),
                needs_degree=True),
}


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
        self.norm = nn.LayerNorm(channels)
        self.edge_mlp = mlp(3 * channels, channels)

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor, edge_dir: Tensor | None = None,
                update_edges: bool = True) -> tuple[Tensor, Tensor]:
        """``edge_dir`` (1: the event enters the receiving node ``edge_index[1]``) is needed with ``reverse``."""
        if self.reverse:  # index_select: its backward is an index_add, a boolean mask's a slow index_put
            inward, outward = (edge_dir == 1).nonzero().squeeze(1), (edge_dir == 0).nonzero().squeeze(1)
            agg = (self.conv(h, edge_index.index_select(1, inward), e.index_select(0, inward))
                   + self.conv_rev(h, edge_index.index_select(1, outward), e.index_select(0, outward))) / 2
        else:
            agg = self.conv(h, edge_index, e)
        h = (h + torch.relu(self.norm(agg))) / 2
        if update_edges:
            src, dst = edge_index
            ends = torch.cat([h.index_select(0, src), h.index_select(0, dst), e], dim=-1)
            e = e + self.edge_mlp(ends) / 2
        return h, e


class TreeGNN(nn.Module):
    """Message passing from the leaves of per-seed sampled trees towards their roots.

    Only the roots' states are used, so layer l of L needs only the edges of hops <= L - l + 1
    (edges arrive grouped by hop, so that is a prefix), and the last layer skips its edge update.
    The roots' states are exactly those of running every layer on every edge.
    """

    def __init__(self, channels: int, layers: int, kind: str = "gine", deg: Tensor | None = None,
                 reverse: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(EdgeUpdatingLayer(channels, kind, deg, reverse) for _ in range(layers))

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor, edge_hop: Tensor,
                edge_dir: Tensor | None = None) -> Tensor:
        num_layers = len(self.layers)
        # edges_up_to[k] = number of edges of hops <= k
        edges_up_to = torch.searchsorted(edge_hop, torch.arange(num_layers + 1, device=edge_hop.device), right=True)
        for i, layer in enumerate(self.layers):
            n = int(edges_up_to[min(num_layers - i, len(edges_up_to) - 1)])
            h, e = layer(h, edge_index[:, :n], e[:n], None if edge_dir is None else edge_dir[:n],
                         update_edges=i < num_layers - 1)
        return h
