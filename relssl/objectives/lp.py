"""LP — link prediction: score each seed edge (source, target) above corrupted edges, every state
computed at the seed's time.

LP samples a neighbourhood of its own (``own_view``): for each seed event at time t, the trees of
its source, its target and M candidate entities, all cut off at t, all without the seed event
and without any other event between the seed's source and target, in either direction (or the
task is "are they already connected?"). The other tasks' neighbourhoods keep those events.
Candidate c gives two negatives: (c, target) and (source, c). Because a positive and its
negatives are computed at the same time, nothing about *when* a state was computed can tell them
apart, and batch composition cannot change a score: an earlier design that paired states of
other seeds, at other times, learnt "do these two states share a time cut-off?" and scored at
chance on time-sorted batches.

Candidates are endpoints of random events at or before t (each event equally likely, so entities
by activity up to t, as positives' endpoints are), never the future. A corrupted pair that is
connected, in either direction, by an event at or before t (of any split) is not a negative: its
candidate is redrawn a few times, and pairs that still collide are left out of loss and ranking.
A pair that links only after t is a negative at t (time-aware filtering, in training and in
evaluation alike): filtering with later links would let the future choose a row's negatives.
The trees carry no ego marks: the states score pairs other than their trees' own.

Cost: 2 + M trees per scored seed instead of the shared view's 2 (``lp_negatives`` K = 2M). In
training LP scores a seeded share of each batch's seeds (``lp_seed_share``, 1/8 by default), so an
MCM+LP step costs about 1.3x an MCM step instead of 3-4x (relssl bench-tasks --repeated-pairs): like PyG's link loaders, the positive
edges of an LP step need not be all of the batch. Evaluation scores every seed.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from relssl.data.prepare import PreparedData
from relssl.errors import RelsslError
from relssl.graph.batch import Batch, BatchBuilder
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, Objective, TaskOutput, ranking_metrics, ranking_output
from relssl.objectives.fk_lp import ForeignKeyPrediction


def pair_keys(prep: PreparedData) -> tuple[Tensor, Tensor | None]:
    """Sorted unique ``u * num_entities + v`` of every connected pair, both directions, all events,
    and the time of each pair's first event (None for data without time)."""
    n = prep.num_entities
    keys, at = torch.unique(torch.cat([prep.src * n + prep.dst, prep.dst * n + prep.src]), return_inverse=True)
    if prep.time is None:
        return keys, None
    first = torch.full((len(keys),), torch.iinfo(torch.long).max)
    return keys, first.scatter_reduce_(0, at, torch.cat([prep.time, prep.time]), "amin")


class LinkPrediction(Objective):
    name = "lp"
    own_view = True
    needs_graph = True
    redraws = 3  # rounds of redrawing candidates that make a connected pair

    OPTIONS = {"lp_negatives": (8, "LP: negatives per seed edge, even: each of K/2 candidate entities replaces "
                                   "the source once and the target once (K/2 + 2 trees per seed)"),
               "lp_seed_share": (0.125, "LP: share of each training batch's seeds it scores (seeded draw); "
                                       "evaluation scores all"),
               "lp_relation": (None, "LP on a database: the seed table's foreign key to predict, by its column(s) "
                                     "(a+b for a composite key); default: the one into the largest table")}

    @classmethod
    def build(cls, ctx: BuildContext) -> "LinkPrediction | ForeignKeyPrediction":
        """The event graph's LP, or on a database the prediction of a foreign key (relssl.objectives.fk_lp)."""
        if ctx.prep.database is not None:
            return ForeignKeyPrediction(ctx.prep.database, ctx.options["lp_relation"], ctx.channels,
                                        ctx.options["lp_negatives"], ctx.options["lp_seed_share"])
        pairs, first_linked = pair_keys(ctx.prep)
        return cls(pairs, first_linked, ctx.prep.num_entities, ctx.channels, ctx.options["lp_negatives"],
                   ctx.options["lp_seed_share"])

    def __init__(self, pairs: Tensor, first_linked: Tensor | None, num_entities: int, channels: int,
                 negatives: int = 8, seed_share: float = 1.0):
        super().__init__()
        if negatives < 2 or negatives % 2:
            raise RelsslError(f"lp_negatives {negatives}: expected an even number of negatives per edge (>= 2): "
                              f"each candidate entity replaces the source once and the target once")
        if not 0 < seed_share <= 1:
            raise RelsslError(f"lp_seed_share {seed_share}: expected a share in (0, 1]")
        # candidates are drawn on the CPU, next to the sampler; never saved
        self.pairs, self.first_linked = pairs, first_linked
        self.num_entities, self.candidates, self.seed_share = num_entities, negatives // 2, seed_share
        self.score = nn.Sequential(nn.Linear(3 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))

    def connected(self, u: Tensor, v: Tensor, time: Tensor | None) -> Tensor:
        """Whether (u, v) is linked by an event at or before ``time`` (by any event when None)."""
        key = u * self.num_entities + v
        at = torch.searchsorted(self.pairs, key).clamp(max=len(self.pairs) - 1)
        linked = self.pairs[at] == key
        return linked if time is None or self.first_linked is None else linked & (self.first_linked[at] <= time)

    def sample_candidates(self, builder: BatchBuilder, rows: Tensor,
                          generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """[B, M] candidate entities for the seed events ``rows``, and which of their negatives are
        usable: [B, M] (candidate, target) and [B, M] (source, candidate)."""
        prep, m = builder.prep, self.candidates
        u, v = prep.src[rows], prep.dst[rows]
        events, times = builder.events_by_time
        if times is None or not builder.sampler.time_aware:
            history, seed_time = torch.full((len(rows),), len(events)), None
        else:  # events at or before each seed's time (its own among them)
            history = torch.searchsorted(times, prep.time[rows], right=True)
            seed_time = prep.time[rows].unsqueeze(1)
        has = (history > 0).unsqueeze(1)

        def draw() -> Tensor:
            pick = (torch.rand(len(rows), m, generator=generator) * history.unsqueeze(1)).long()
            event = events[pick.clamp(max=max(len(events) - 1, 0))]
            return torch.where(torch.rand(len(rows), m, generator=generator) < 0.5, prep.src[event], prep.dst[event])

        def usable(c: Tensor) -> tuple[Tensor, Tensor]:
            return (has & ~self.connected(c, v.unsqueeze(1), seed_time),
                    has & ~self.connected(u.unsqueeze(1), c, seed_time))

        cand = draw()
        for _ in range(self.redraws):
            ok_source, ok_target = usable(cand)
            taken = ~(ok_source & ok_target) & has
            if not taken.any():
                break
            cand = torch.where(taken, draw(), cand)
        return (cand, *usable(cand))

    def pair_score(self, hu: Tensor, hv: Tensor) -> Tensor:
        return self.score(torch.cat([hu, hv, hu * hv], dim=-1)).squeeze(-1)

    def scored_rows(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        """The seeds LP scores: in training a seeded ``seed_share`` of them (at least one), else all."""
        if not self.training or self.seed_share >= 1:
            return rows
        keep = max(1, round(self.seed_share * len(rows)))
        return rows[torch.randperm(len(rows), generator=generator)[:keep].sort().values]

    def view(self, builder: BatchBuilder, rows: Tensor, cand: Tensor, generator: torch.Generator) -> Batch:
        """The trees of the seed events ``rows`` and of their candidates [B, M], all at each seed's
        time and without the seed's pair. Candidates go into the sampler two by two (a pair of roots
        shares a time and a hidden pair), the last one twice when M is odd."""
        prep, m = builder.prep, cand.shape[1]
        if m % 2:
            cand = torch.cat([cand, cand[:, -1:]], 1)
        half = cand.shape[1] // 2
        u, v = prep.src[rows], prep.dst[rows]

        def per_root(x: Tensor) -> Tensor:  # one value per pseudo-seed: the positive's, then its candidates'
            return torch.cat([x, x.repeat_interleave(half)])

        sub = builder.sampler.sample(
            torch.cat([u, cand[:, :half].reshape(-1)]), torch.cat([v, cand[:, half:].reshape(-1)]),
            None if prep.time is None else per_root(prep.time[rows]), generator, exclude_edge=per_root(rows),
            exclude_pair=True, pair=(per_root(u), per_root(v)))
        return Batch(rows, None, builder.context(sub))  # only its graph is encoded

    def states(self, model: Backbone, view: Batch, m: int) -> tuple[Tensor, Tensor, Tensor]:
        """Source [B, d], target [B, d] and candidate [B, M, d] states from the encoded ``view``."""
        h = model.encode_graph(view, ego_ids=False)
        b, half, d = len(view.rows), (m + 1) // 2, h.shape[1] // 2
        roots = h[b:].view(b, half, 2, d).transpose(1, 2).reshape(b, 2 * half, d)  # candidates in input order
        return h[:b, :d], h[:b, d:], roots[:, :m]

    def prepare(self, batch: Batch, generator: torch.Generator):
        rows = self.scored_rows(batch.rows.cpu(), generator)
        cand, ok_source, ok_target = self.sample_candidates(batch.builder, rows, generator)
        return cand, ok_source, ok_target, self.view(batch.builder, rows, cand, generator)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        cand, ok_source, ok_target, view = batch.prepared.get(self) or self.prepare(batch, generator)
        hu, hv, hc = self.states(model, view.to(batch.rows.device), cand.shape[1])
        pos = self.pair_score(hu, hv)
        neg = torch.cat([self.pair_score(hc, hv.unsqueeze(1).expand_as(hc)),
                         self.pair_score(hu.unsqueeze(1).expand_as(hc), hc)], 1)
        return ranking_output(pos, neg, torch.cat([ok_source, ok_target], 1))

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return ranking_metrics(sums)
