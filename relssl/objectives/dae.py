"""DAE — denoising autoencoder (VIME's reconstruction task): swap-noise a row, then reconstruct every
observed maskable cell, corrupted or not, from each cell's token and the fused representation.

Unlike MCM, the loss covers the whole row, so the model must also tell which cells to keep.
"""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.graph.batch import Batch
from relssl.masking import Masker
from relssl.nn.backbone import Backbone
from relssl.objectives.base import Objective, TaskOutput, cell_features, masked_view
from relssl.objectives.mcm import CellHeads, cell_metrics


class DenoisingAutoencoder(Objective):
    name = "dae"

    def __init__(self, masker: Masker, channels: int):
        super().__init__()
        self.masker = masker
        self.heads = CellHeads(masker, 2 * channels)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        _, rep = masked_view(model, batch, graph, self.masker, generator)
        loss, sums = self.heads.loss(cell_features(rep), self.masker.observed(batch.tf), batch.tf)
        return TaskOutput(loss, sums)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return cell_metrics(sums)
