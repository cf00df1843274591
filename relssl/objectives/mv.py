"""MV — mask-vector estimation (VIME, Yoon et al. 2020): say which cells of a corrupted row were
changed, from each cell's output token and the fused row representation. As in VIME the label is
1 where the input differs from the original: a ``bert`` cell left unchanged, or a replacement that
drew the same value, is 0. ``acc_ref`` is the accuracy of calling every cell unchanged.

With MCM on the same masker it shares the batch's masks and masked forward pass (``masked_view``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relssl.graph.batch import Batch
from relssl.masking import Masker
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, Objective, TaskOutput, cell_features, masked_view


class MaskVectorEstimation(Objective):
    name = "mv"

    masks_cells = True

    @classmethod
    def build(cls, ctx: BuildContext) -> "MaskVectorEstimation":
        return cls(ctx.run_masker(), ctx.channels)

    def __init__(self, masker: Masker, channels: int):
        super().__init__()
        self.masker = masker
        self.head = nn.Sequential(nn.Linear(2 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        masked, rep = masked_view(model, batch, graph, self.masker, generator)
        # the first layer part by part (CellFeatures)
        logits = self.head[1:](cell_features(rep).linear(self.head[0])).squeeze(-1)  # [B, C]
        observed = self.masker.observed(batch.tf)  # the cells a mask can choose
        label = masked.corrupted & observed
        loss = F.binary_cross_entropy_with_logits(logits[observed], label[observed].float())
        # Which-column accuracy on rows with exactly one changed cell (most rows under the default mask),
        # beside a uniform guess among the row's observed cells.
        single = label.sum(1) == 1
        guess = logits.detach().masked_fill(~observed, float("-inf")).argmax(1)
        sums = {"cell_correct": (((logits > 0) == label) & observed).sum(), "cell_unchanged": (~label & observed).sum(),
                "cell_count": observed.sum(),
                "col_correct": (label.gather(1, guess.unsqueeze(1)).squeeze(1) & single).sum(),
                "col_ref": (1 / observed[single].sum(1).clamp(min=1)).sum(), "col_count": single.sum()}
        return TaskOutput(loss, sums)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        out = {"loss": sums.get("loss", float("nan")) / max(sums.get("batches", 0), 1)}
        if sums.get("cell_count"):
            out["acc"] = sums["cell_correct"] / sums["cell_count"]
            out["acc_ref"] = sums["cell_unchanged"] / sums["cell_count"]
        if sums.get("col_count"):
            out["col_acc"] = sums["col_correct"] / sums["col_count"]
            out["col_acc_ref"] = sums["col_ref"] / sums["col_count"]
        return out
