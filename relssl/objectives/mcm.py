"""MCM — masked cell modelling: reconstruct a row's masked cells from the rest of the row plus
its graph context. ACC on categorical cells, RMSE on numerical cells (standardised, and in the
column's units after any declared transform); on text/embedding cells the head predicts the
vector (loss 1 − cosine): emb_cos is the mean cosine, emb_r1 the in-batch retrieval top-1."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch_frame
from torch import Tensor, nn

from relssl.data.encoding import ColumnInfo
from relssl.graph.batch import Batch
from relssl.masking import Masker
from relssl.nn.backbone import Backbone
from relssl.objectives.base import Objective, TaskOutput, cell_features, masked_view


def embedding_scores(pred: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine of each predicted vector with its own true vector, and whether that true vector is
    the nearest (by cosine) of the batch's true vectors. Identical true vectors (a repeated
    review) are one candidate; a tie with a different one counts as a miss."""
    p, t = F.normalize(pred, dim=-1), F.normalize(truth, dim=-1)
    sim = p @ t.T
    own = sim.diagonal()
    same = (t @ t.T) > 1 - 1e-6
    hit = ~((sim >= own.unsqueeze(1)) & ~same).any(1)
    return own, hit


class CellHeads(nn.Module):
    """One prediction head per maskable column: classes for categorical, a value for numerical,
    a vector for text/embedding columns."""

    def __init__(self, columns: list[ColumnInfo], in_dim: int):
        super().__init__()
        self.columns = columns
        self.heads = nn.ModuleDict()
        for pos, col in enumerate(columns):
            if col.maskable:
                out = {torch_frame.categorical: col.num_categories, torch_frame.embedding: col.dim}.get(col.stype, 1)
                self.heads[str(pos)] = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out))
        self.has_embedding = any(c.maskable and c.stype == torch_frame.embedding for c in columns)

    def loss(self, features: Tensor, target: Tensor, batch_tf) -> tuple[Tensor, dict[str, float]]:
        """``features(pos)`` rows for the cells of column ``pos`` flagged in ``target`` [B, C]; the
        true values come from the uncorrupted ``batch_tf``. Mean loss over all target cells."""
        total = features.new_zeros(())
        sums = {"cat_correct": 0.0, "cat_count": 0.0, "num_sse": 0.0, "num_sse_raw": 0.0, "num_count": 0.0}
        if self.has_embedding:
            sums.update(emb_cos=0.0, emb_hit=0.0, emb_count=0.0)
        n_cells = int(target.sum())
        for key, head in self.heads.items():
            pos = int(key)
            rows = target[:, pos].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            col = self.columns[pos]
            out = head(features[rows, pos])
            if col.stype == torch_frame.embedding:
                feat = batch_tf.feat_dict[col.stype]
                truth = feat.values[rows, int(feat.offset[col.index]):int(feat.offset[col.index + 1])]
                cos, hit = embedding_scores(out, truth)
                total = total + (1 - cos).sum()
                sums["emb_cos"] += float(cos.detach().sum())
                sums["emb_hit"] += float(hit.sum())
                sums["emb_count"] += rows.numel()
                continue
            truth = batch_tf.feat_dict[col.stype][rows, col.index]
            if col.stype == torch_frame.categorical:
                total = total + F.cross_entropy(out, truth, reduction="sum")
                sums["cat_correct"] += float((out.argmax(-1) == truth).sum())
                sums["cat_count"] += rows.numel()
            else:
                z = (truth - col.mean) / col.std
                err = (out.squeeze(1) - z) ** 2
                total = total + err.sum()
                sse = float(err.detach().sum())
                sums["num_sse"] += sse
                sums["num_sse_raw"] += sse * col.std ** 2
                sums["num_count"] += rows.numel()
        return total / max(n_cells, 1), sums


def cell_metrics(sums: dict[str, float]) -> dict[str, float]:
    nan = float("nan")
    out = {"loss": sums.get("loss", nan) / max(sums.get("batches", 0), 1)}
    if sums.get("cat_count"):
        out["acc"] = sums["cat_correct"] / sums["cat_count"]
    if sums.get("num_count"):
        out["rmse"] = math.sqrt(sums["num_sse"] / sums["num_count"])
        out["rmse_raw"] = math.sqrt(sums["num_sse_raw"] / sums["num_count"])
    if sums.get("emb_count"):
        out["emb_cos"] = sums["emb_cos"] / sums["emb_count"]
        out["emb_r1"] = sums["emb_hit"] / sums["emb_count"]
    return out


class MaskedCellModelling(Objective):
    name = "mcm"

    def __init__(self, masker: Masker, channels: int):
        super().__init__()
        self.masker = masker
        self.heads = CellHeads(masker.columns, 2 * channels)

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        masked, rep = masked_view(model, batch, graph, self.masker, generator)
        # Each cell's head sees its own column's output token and the fused row representation.
        loss, sums = self.heads.loss(cell_features(rep), masked.target, batch.tf)
        return TaskOutput(loss, sums)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return cell_metrics(sums)
