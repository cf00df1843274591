"""DAE — denoising autoencoder (VIME's reconstruction task): swap-noise a row, then reconstruct every
observed maskable cell, corrupted or not, from each cell's token and the fused representation.

Unlike MCM, the loss covers the whole row, so the model must also tell which cells to keep.
"""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.graph.batch import Batch
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, TaskOutput, cell_features, masked_view
from relssl.objectives.mcm import CellReconstruction


class DenoisingAutoencoder(CellReconstruction):
    name = "dae"
    OPTIONS = {"dae_prob": (0.15, "DAE: probability that a cell is swap-noised")}

    @classmethod
    def build(cls, ctx: BuildContext) -> "DenoisingAutoencoder":
        return cls(ctx.noise_masker("dae_prob"), 2 * ctx.channels)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        masked, rep = masked_view(model, batch, graph, self.masker, generator)
        # Every observed cell is a target, most of them unchanged: the reference copies the input.
        loss, sums = self.heads.loss(cell_features(rep), self.masker.observed(batch.tf), batch.tf, masked.tf)
        return TaskOutput(loss, sums)
