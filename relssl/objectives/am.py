"""AM — attribute masking (Hu et al. 2020, "Strategies for Pre-training GNNs"): reconstruct a row's
masked cells from its relational neighbourhood alone.

The head sees only the GNN's states of the row's source and target nodes (in a database, of the
row's own node, started from its table's learned state). The backbone computes them without the row itself (its own event is never in its neighbourhood), so none of the row's
cells, masked or not, can reach the prediction: AM measures what the graph knows about an event,
where MCM measures what the rest of the row (plus the graph) knows.
"""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.graph.batch import Batch
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, CellFeatures, TaskOutput, masked_rows
from relssl.objectives.mcm import CellReconstruction


class AttributeMasking(CellReconstruction):
    name = "am"
    needs_graph = True

    @classmethod
    def build(cls, ctx: BuildContext) -> "AttributeMasking":
        return cls(ctx.run_masker(), ctx.graph_channels)  # its heads read the graph encoding alone

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        # One head per column, so the column needs no query embedding: the input is the graph state.
        masked = masked_rows(batch, self.masker, generator)
        loss, sums = self.heads.loss(CellFeatures(None, graph), masked.target, batch.tf)
        return TaskOutput(loss, sums)
