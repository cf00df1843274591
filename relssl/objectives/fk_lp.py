"""LP on a database: predict the row a foreign key references (a rating's movie, a capture's
species) among time-valid candidates, every state computed at the seed row's time.

The seed row's tree does not follow the predicted key from its root, nor any other key sharing a
column with it (the answer is not in its context); its own cells are features of its root. Each candidate is the root of a tree of its own,
cut off at the seed's time and without the seed row (a movie's tree would otherwise hold the
very rating that links it), its own cells features too. Candidates are rows referenced by random
rows of the seed's split at or before its time (rows by activity up to then, as positives are),
never the future; a candidate equal to the answer, no row, or a row whose own time is later than
the seed's, is redrawn a few times and left out of loss and ranking if it still is. A seed whose
answer is later than itself (a key into the future, found only in inconsistent data) is not
asked: its answer's tree would be the only one rooted in the future (a negative age at the
root). Positive and negatives share the seed's time, so nothing about when a state was computed
tells them apart, and each seed's trees are its own: batch composition cannot change a score.

Cost: 2 + K trees per scored seed; training scores a seeded share of each batch's seeds
(``lp_seed_share``), evaluation all of them.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from relssl.data.prepare import DatabaseGraph
from relssl.errors import RelsslError
from relssl.graph.batch import Batch, BatchBuilder
from relssl.nn.backbone import Backbone
from relssl.objectives.base import Objective, TaskOutput, ranking_metrics, ranking_output


def predicted_key(db: DatabaseGraph, spec: str | None) -> tuple[int, str]:
    """The link index (into ``db.links``, the order of RelationGraph's relations) and name of the
    seed table's foreign key LP predicts: the one given by its column(s) (``series+episode``), by
    default the one into the table with the most rows (the hardest choice)."""
    keys = [(i, name, db.num_rows[target]) for i, ((child, name), (target, _)) in enumerate(db.links.items())
            if child == db.seed_table]
    if not keys:
        raise RelsslError(f"--objectives lp on table '{db.names[db.seed_table]}': it has no foreign key to predict")
    if spec:
        chosen = [(i, name) for i, name, _ in keys if name.split(" -> ")[0] == spec.strip()]
        if not chosen:
            raise RelsslError(f"--lp-relation {spec}: not a foreign key of table '{db.names[db.seed_table]}'; "
                              f"expected one of {', '.join(name.split(' -> ')[0] for _, name, _ in keys)}")
        return chosen[0]
    i, name, _ = max(keys, key=lambda k: k[2])
    return i, name


class ForeignKeyPrediction(Objective):
    name = "lp"
    own_view = True
    needs_graph = True
    redraws = 3

    def __init__(self, db: DatabaseGraph, relation: str | None, channels: int, negatives: int = 8,
                 seed_share: float = 1.0):
        super().__init__()
        if negatives < 1:
            raise RelsslError(f"lp_negatives {negatives}: expected at least one negative per row")
        if not 0 < seed_share <= 1:
            raise RelsslError(f"lp_seed_share {seed_share}: expected a share in (0, 1]")
        self.link, self.key_name = predicted_key(db, relation)
        self.target_table, self.target = db.links[list(db.links)[self.link]]
        # Each seed row's time and its referenced table's row times (either None: nothing to check).
        self.seed_time, self.target_time = db.times[db.seed_table], db.times[self.target_table]
        # The seed's root follows neither the key nor any other key sharing a column with it (flights'
        # weather key, origin + hour, leads to the other flights of that origin: the answer).
        # RelationGraph lists each key forward, then reversed.
        columns = set(self.key_name.split(" -> ")[0].split("+"))
        self.dropped = tuple(2 * i for i, (child, name) in enumerate(db.links)
                             if child == db.seed_table and columns & set(name.split(" -> ")[0].split("+")))
        self.negatives, self.seed_share = negatives, seed_share
        self.score = nn.Sequential(nn.Linear(3 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))

    def scored_rows(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        """The seeds LP scores: linked ones, to a row not later than themselves; in training a seeded
        ``seed_share`` of them (at least one)."""
        rows = rows[self.target[rows] >= 0]
        rows = rows[~self.later(self.target[rows], rows)]
        if not self.training or self.seed_share >= 1 or not len(rows):
            return rows
        keep = max(1, round(self.seed_share * len(rows)))
        return rows[torch.randperm(len(rows), generator=generator)[:keep].sort().values]

    def later(self, target_rows: Tensor, seed_rows: Tensor) -> Tensor:
        """Whether each row of the referenced table is later than the seed row beside it (never
        when either table has no time)."""
        if self.seed_time is None or self.target_time is None:
            return torch.zeros(target_rows.shape, dtype=torch.bool)
        seed_time = self.seed_time[seed_rows]
        if target_rows.dim() > 1:  # [B, K] candidates of B seeds
            seed_time = seed_time.unsqueeze(1)
        return self.target_time[target_rows.clamp(min=0)] > seed_time

    def sample_candidates(self, builder: BatchBuilder, rows: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """[B, K] candidate rows of the referenced table and which of them are usable negatives."""
        visible, times = builder.events_by_time
        if times is None or not builder.time_aware:
            history = torch.full((len(rows),), len(visible))
        else:
            history = torch.searchsorted(times, builder.prep.time[rows], right=True)
        answer = self.target[rows].unsqueeze(1)

        def draw() -> Tensor:
            pick = (torch.rand(len(rows), self.negatives, generator=generator) * history.unsqueeze(1)).long()
            return self.target[visible[pick.clamp(max=max(len(visible) - 1, 0))]]

        def bad(c: Tensor) -> Tensor:
            return (c == answer) | (c < 0) | self.later(c, rows)

        cand = draw()
        for _ in range(self.redraws):
            taken = bad(cand)
            if not taken.any():
                break
            cand = torch.where(taken, draw(), cand)
        return cand.clamp(min=0), ~bad(cand) & (history > 0).unsqueeze(1)

    def trees(self, builder: BatchBuilder, rows: Tensor, cand: Tensor, generator: torch.Generator):
        """The seed rows' trees without the predicted key, and the answer's and the candidates'
        [B * (1 + K)], all at each seed's time and without the seed row."""
        db = builder.prep.database
        time = None if builder.prep.time is None else builder.prep.time[rows]
        cut = time if builder.time_aware else None
        seeds = builder.tree_context(db.seed_table, rows, cut, generator, drop_at_root=self.dropped,
                                     root_cells=True, label_time=time)
        options = torch.cat([self.target[rows].unsqueeze(1), cand], 1)
        k = options.shape[1]

        def per_root(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.repeat_interleave(k)

        others = builder.tree_context(self.target_table, options.reshape(-1), per_root(cut), generator,
                                      hide=(db.seed_table, per_root(rows)), root_cells=True,
                                      label_time=per_root(time))
        return seeds, others

    def pair_score(self, hu: Tensor, hv: Tensor) -> Tensor:
        return self.score(torch.cat([hu, hv, hu * hv], dim=-1)).squeeze(-1)

    def prepare(self, batch: Batch, generator: torch.Generator):
        rows = self.scored_rows(batch.rows.cpu(), generator)
        if not len(rows):
            return rows, None, None
        cand, valid = self.sample_candidates(batch.builder, rows, generator)
        return rows, valid, self.trees(batch.builder, rows, cand, generator)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        rows, valid, trees = batch.prepared.get(self) or self.prepare(batch, generator)
        if not len(rows):
            zero = self.score[0].weight.sum() * 0
            return TaskOutput(zero, {"count": 0.0})
        device = batch.rows.device
        h_seed = model.encode_relations(trees[0].to(device))
        h_options = model.encode_relations(trees[1].to(device)).view(len(rows), valid.shape[1] + 1, -1)
        scores = self.pair_score(h_seed.unsqueeze(1).expand_as(h_options), h_options)
        return ranking_output(scores[:, 0], scores[:, 1:], valid)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return ranking_metrics(sums)
