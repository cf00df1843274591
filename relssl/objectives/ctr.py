"""CTR — contrastive learning (SCARF, Bahri et al. 2022): two corrupted views of each row must agree
(InfoNCE), the batch's other rows serving as negatives.

Each view replaces a random subset of the row's cells (probability ``masker.prob``) with draws
from the training distribution, is encoded to the fused representation and projected; the
symmetric InfoNCE of the views' cosine similarities / temperature is the loss. Metrics follow
Wang & Isola (2020): alignment (mean squared distance of normalised positive pairs), uniformity
(log of the mean of exp(-2 d^2) over in-batch pairs), and top-1 in-batch retrieval of the positive.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relssl.errors import RelsslError
from relssl.graph.batch import Batch
from relssl.masking import Masker
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, Objective, TaskOutput


class Contrastive(Objective):
    name = "ctr"

    masks_cells = True
    OPTIONS = {"ctr_prob": (0.6, "CTR: probability that a cell of a view is corrupted"),
               "ctr_temperature": (0.1, "CTR: InfoNCE temperature")}

    @classmethod
    def build(cls, ctx: BuildContext) -> "Contrastive":
        return cls(ctx.noise_masker("ctr_prob"), ctx.channels, ctx.options["ctr_temperature"])

    def __init__(self, masker: Masker, channels: int, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise RelsslError(f"ctr_temperature {temperature}: expected a positive number")
        self.masker, self.temperature = masker, temperature
        self.project = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels))

    def view(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> Tensor:
        corrupted = self.masker(batch.tf, generator)
        rep = model.encode_rows(corrupted.tf, corrupted.remove, graph)
        return F.normalize(self.project(rep.fused), dim=-1)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        z1, z2 = self.view(model, batch, graph, generator), self.view(model, batch, graph, generator)
        logits = z1 @ z2.T / self.temperature
        label = torch.arange(len(z1), device=z1.device)
        loss = (F.cross_entropy(logits, label) + F.cross_entropy(logits.T, label)) / 2
        with torch.no_grad():
            pair_sq = torch.pdist(z1.float()).pow(2)  # pdist has no bf16 kernel
            sums = {"rows": float(len(z1)), "align": (z1 - z2).pow(2).sum(), "uniform_exp": torch.exp(-2 * pair_sq).sum(),
                    "pairs": float(len(pair_sq)), "top1": (logits.argmax(1) == label).sum(),
                    "top1_ref": 1.0}  # random: 1/B per row
        return TaskOutput(loss, sums)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        nan = float("nan")
        rows = max(sums.get("rows", 0.0), 1.0)
        out = {"loss": sums.get("loss", nan) / max(sums.get("batches", 0), 1),
               "align": sums.get("align", nan) / rows, "top1": sums.get("top1", nan) / rows,
               "top1_ref": sums.get("top1_ref", nan) / rows}
        if sums.get("pairs"):
            out["uniform"] = math.log(sums["uniform_exp"] / sums["pairs"])
        return out
