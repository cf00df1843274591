"""LP — link prediction: score each seed edge (source, target) above corrupted edges.

The target edge, and every parallel or reverse edge between its endpoints, is hidden from the
batch's message passing (``excludes_pair``), so the model cannot read the answer off its input.

Negatives are in-batch corruptions: each positive gets ``negatives`` corrupted pairs, half with the
source replaced and half with the target replaced, by one of the batch's own 2B seed endpoints.
Their node states are already computed by ``encode_graph`` (each in its own seed's tree, at that
seed's time), so negatives cost one small MLP each and no extra message passing. A corrupted pair
that exists, in either direction, in any event of the data (any split, any time) is never a
negative: it is redrawn a few times, and any that still collide are left out of loss and ranking.
Excluding both directions matches the hiding of reverse edges for the positives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relssl.data.prepare import PreparedData
from relssl.errors import RelsslError
from relssl.eval.ranking import pessimistic_rank, rank_metrics, rank_sums
from relssl.graph.batch import Batch
from relssl.nn.backbone import Backbone
from relssl.objectives.base import Objective, TaskOutput


def pair_keys(prep: PreparedData) -> Tensor:
    """Sorted unique ``u * num_entities + v`` of every connected pair, both directions, all events."""
    n = prep.num_entities
    return torch.unique(torch.cat([prep.src * n + prep.dst, prep.dst * n + prep.src]))


class LinkPrediction(Objective):
    name = "lp"
    excludes_pair = True
    needs_graph = True
    redraws = 3  # rounds of redrawing corrupted pairs that hit an existing pair

    def __init__(self, pairs: Tensor, num_entities: int, channels: int, negatives: int = 64):
        super().__init__()
        if negatives < 1:
            raise RelsslError(f"lp_negatives {negatives}: expected a positive number of negatives per edge")
        self.register_buffer("pairs", pairs, persistent=False)  # moves with the model, never saved
        self.num_entities, self.negatives = num_entities, negatives
        self.score = nn.Sequential(nn.Linear(3 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))

    def connected(self, u: Tensor, v: Tensor) -> Tensor:
        key = u * self.num_entities + v
        at = torch.searchsorted(self.pairs, key).clamp(max=len(self.pairs) - 1)
        return self.pairs[at] == key

    def sample_negatives(self, entity: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """For the 2B seed endpoints ``entity`` (sources, then targets): [B, K] indices into them of
        each negative's source and target, and which negatives are usable (not a connected pair)."""
        b, k = len(entity) // 2, self.negatives
        seed = torch.arange(b, device=entity.device).unsqueeze(1)
        replace_source = torch.arange(k, device=entity.device) < k // 2

        def corrupt(other: Tensor) -> tuple[Tensor, Tensor]:
            return torch.where(replace_source, other, seed), torch.where(replace_source, b + seed, other)

        other = torch.randint(2 * b, (b, k), generator=generator).to(entity.device)
        for _ in range(self.redraws):
            u, v = corrupt(other)
            taken = self.connected(entity[u], entity[v])
            if not taken.any():
                break
            other = torch.where(taken, torch.randint(2 * b, (b, k), generator=generator).to(entity.device), other)
        u, v = corrupt(other)
        return u, v, ~self.connected(entity[u], entity[v])

    def pair_score(self, hu: Tensor, hv: Tensor) -> Tensor:
        return self.score(torch.cat([hu, hv, hu * hv], dim=-1)).squeeze(-1)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        b, d = graph.shape[0], graph.shape[1] // 2
        roots = torch.cat([graph[:, :d], graph[:, d:]])  # [2B, d] node states: seed sources, then targets
        u, v, valid = self.sample_negatives(batch.graph.sub.node_entity[: 2 * b], generator)
        pos = self.pair_score(roots[:b], roots[b:])
        neg = self.pair_score(roots[u], roots[v])
        # Positives and negatives weigh equally, however many negatives each positive has.
        neg_loss = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), weight=valid.float(), reduction="sum")
        loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + neg_loss / valid.sum().clamp(min=1)
        ranks = pessimistic_rank(pos.detach(), neg.detach(), valid)
        return TaskOutput(loss, rank_sums(ranks, 1 + valid.sum(1)))

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {**rank_metrics(sums), "loss": sums.get("loss", float("nan")) / max(sums.get("batches", 0), 1)}
