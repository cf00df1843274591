"""The ID-only baselines (BPR-MF, LightGCN) and the interface every recommender shares: embeddings
for full ranking, and a dict of named loss terms for training."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from relssl.recsys.graph import Csr, propagate, symmetric_adjacency
from relssl.recsys.losses import bpr


class Batch(NamedTuple):
    users: torch.Tensor  # distinct users
    pos: torch.Tensor  # one training item of each user
    neg: torch.Tensor  # one item the user has not interacted with in training


def id_embedding(n: int, dim: int) -> nn.Embedding:
    emb = nn.Embedding(n, dim)
    nn.init.xavier_uniform_(emb.weight)
    return emb


class Recommender(nn.Module):
    """Scores are inner products of user and item embeddings."""

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All user and all item embeddings (users × dim, items × dim)."""
        raise NotImplementedError

    def losses(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Named, unweighted loss terms of one batch."""
        users, items = self.embed()
        return bpr(users[batch.users], items[batch.pos], items[batch.neg])

    def refresh(self) -> None:
        """Recompute state derived from the weights (MMSSL's generated graphs); none here."""

    @property
    def modalities(self) -> list[str]:
        """The item feature modalities the model reads."""
        return []


class BPRMF(Recommender):
    """Matrix factorisation trained with BPR (Rendle et al. 2009)."""

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user, self.item = id_embedding(n_users, dim), id_embedding(n_items, dim)

    def embed(self):
        return self.user.weight, self.item.weight


class LightGCN(BPRMF):
    """ID embeddings smoothed over the normalised user–item graph (He et al. 2020)."""

    def __init__(self, train: Csr, dim: int, layers: int, device: torch.device):
        super().__init__(train.n_rows, train.n_cols, dim)
        self.layers = layers
        self.adj = symmetric_adjacency(train.rows(), train.indices, train.n_rows, train.n_cols).to(device)

    def embed(self):
        h = propagate(self.adj, torch.cat([self.user.weight, self.item.weight]), self.layers)
        return h.split([self.user.num_embeddings, self.item.num_embeddings])
