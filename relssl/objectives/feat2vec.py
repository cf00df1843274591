"""Feat2Vec as a pretext task: its group extractors sit on the backbone's own cell encoders, so
combined with MCM/LP under any combiner it shapes the embeddings those tasks share. Entity id
groups are the objective's own embedding tables (see relssl.feat2vec)."""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.feat2vec import Feat2Vec
from relssl.graph.batch import Batch
from relssl.nn.backbone import Backbone
from relssl.objectives.base import Objective, TaskOutput


class Feat2VecObjective(Objective):
    name = "feat2vec"

    def __init__(self, task: Feat2Vec):
        super().__init__()
        self.task = task

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        def cells(tf):
            return model.row.cells(tf)[0]

        step = self.task(cells, batch.rows, batch.tf, generator)
        sums = dict(step.sums)
        if self.task.target is not None and not self.training:
            # Supervised mode: rank every candidate value of the target group for the batch's rows.
            ranks = self.task.rank(cells, batch.rows, self.task.target,
                                   self.task.candidates(cells, self.task.target), batch.tf)
            sums.update(pr_sum=float(ranks.sum()), pr_count=float(len(ranks)))
        return TaskOutput(step.loss, sums)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        out = {"loss": sums.get("loss", float("nan")) / max(sums.get("batches", 0), 1)}
        if sums.get("pair_count"):
            out["pair_acc"] = sums["pair_correct"] / sums["pair_count"]
        if sums.get("pr_count"):
            out["mpr"] = sums["pr_sum"] / sums["pr_count"]
        return out
