"""Feat2Vec as a pretext task: its group extractors sit on the backbone's own cell encoders, so
combined with MCM/LP under any combiner it shapes the embeddings those tasks share. Entity id
groups are the objective's own embedding tables (see relssl.feat2vec)."""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.feat2vec import Feat2Vec, parse_groups
from relssl.graph.batch import Batch
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, Objective, TaskOutput


class Feat2VecObjective(Objective):
    name = "feat2vec"

    # Groups take relssl.feat2vec.parse_groups's forms (None: one group per column and entity id);
    # a target group switches it to supervised mode (only that group is corrupted, and ranked).
    OPTIONS = {
        "feat2vec_negatives": (5, "Feat2Vec: noise rows per real row"),
        "feat2vec_alpha1": (0.25, "Feat2Vec: a group is corrupted with probability ∝ its parameter count^alpha1"),
        "feat2vec_alpha2": (0.75, "Feat2Vec: a noise value is drawn ∝ its frequency^alpha2"),
        "feat2vec_groups": (None, "Feat2Vec: feature groups, e.g. 'Amount Paid+Amount Received;@source' "
                                  "(default: one per column and entity id)"),
        "feat2vec_target": (None, "Feat2Vec: supervised mode, corrupt and rank only this group"),
    }

    @classmethod
    def build(cls, ctx: BuildContext) -> "Feat2VecObjective":
        opt = ctx.options
        groups = parse_groups(opt["feat2vec_groups"], ctx.prep, "objective_options: feat2vec_groups")
        return cls(Feat2Vec(ctx.prep, groups, ctx.channels, opt["feat2vec_negatives"], opt["feat2vec_alpha1"],
                            opt["feat2vec_alpha2"], opt["feat2vec_target"], "objective_options: feat2vec_target"))

    def __init__(self, task: Feat2Vec):
        super().__init__()
        self.task = task

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        def cells(tf):
            return model.row_encoder().cells(tf)[0]

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
