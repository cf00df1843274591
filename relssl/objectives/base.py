"""The one small interface every pretext task implements, and the masked forward pass they share."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relssl.data.prepare import PreparedData
from relssl.data.splits import TRAIN
from relssl.errors import RelsslError
from relssl.graph.batch import Batch
from relssl.masking import MaskedRows, Masker
from relssl.metrics.ranking import pessimistic_rank, rank_metrics, rank_sums
from relssl.nn.backbone import Backbone, RowRepresentation


@dataclass
class TaskOutput:
    loss: Tensor  # scalar, differentiable
    sums: dict  # metric accumulators for this batch: numbers or tensors (relssl.metrics.sums; Objective.metrics)


@dataclass
class BuildContext:
    """What a task is built from: the prepared data, the width, every task option (defaults
    filled), the mask groups and excluded columns, and the run's masker (``--mask``), made once and shared by the tasks
    that mask cells under it, so that they see one set of masks per batch."""

    prep: PreparedData
    channels: int
    options: dict
    groups: list[list[int]]
    mask_type: str = "replace"
    cells_per_row: int = 1
    mask_prob: float | None = None
    exclude: list[int] = field(default_factory=list)  # column positions no masker hides (--mask-exclude)
    _masker: Masker | None = field(default=None, repr=False)

    @property
    def graph_channels(self) -> int:
        """Width of the backbone's graph encoding: source and target states, or a database row's."""
        return (2 if self.prep.has_graph else 1) * self.channels

    def run_masker(self) -> Masker:
        if self._masker is None:
            self._masker = Masker(self.prep.events, self.prep.rows(TRAIN), self.mask_type, self.cells_per_row,
                                  self.mask_prob, self.groups, self.exclude)
        return self._masker

    def noise_masker(self, option: str) -> Masker:
        """A masker of its own: each cell replaced with probability ``options[option]``."""
        prob = self.options[option]
        if not 0 < prob <= 1:
            raise RelsslError(f"objective_options: {option} {prob}: expected a probability in (0, 1]")
        return Masker(self.prep.events, self.prep.rows(TRAIN), "replace", prob=prob, groups=self.groups,
                      exclude=self.exclude)


class Objective(nn.Module):
    """A pretext task: its heads, a loss on a batch, and metrics from accumulated sums.

    ``graph`` is the backbone's graph encoding of the batch, computed once and shared by every
    objective of a multi-task run. A task registers in relssl.objectives.OBJECTIVES; its options
    (``OPTIONS``: flag name -> (default, help)) become ``--<name>`` flags and ``objective_options``
    keys, and ``build`` makes it from a BuildContext.
    """

    name: str = ""
    OPTIONS: dict[str, tuple] = {}
    masks_cells: bool = False  # corrupts cells: mask groups are resolved for it
    # Samples a neighbourhood of its own from ``batch.builder`` (with draws from a stream of its own,
    # so adding the task leaves every other task's neighbourhoods and masks unchanged).
    own_view: bool = False
    needs_graph: bool = False  # meaningless on a single table (no keys): refused when building

    @classmethod
    def build(cls, ctx: BuildContext) -> "Objective":
        raise NotImplementedError

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        raise NotImplementedError

    def prepare(self, batch: Batch, generator: torch.Generator):
        """A task with a view of its own: every draw and every sampled tree of its step, on the CPU,
        before any model work. The input pipeline (relssl.train.pipeline) calls it ahead of the step
        and ``forward`` reads the result from ``batch.prepared``; called inline otherwise."""
        return None

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Metric name (without the objective prefix) -> value, from an epoch's summed accumulators."""
        raise NotImplementedError


def ranking_output(pos: Tensor, neg: Tensor, valid: Tensor) -> TaskOutput:
    """Link prediction's loss and metric sums: each positive score [B] against its valid negatives
    [B, K] (binary cross-entropy; positives and negatives weigh equally, however many negatives
    each positive has), and the positive's rank among them."""
    valid = valid.to(neg.device)
    neg_loss = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), weight=valid.float(), reduction="sum")
    loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + neg_loss / valid.sum().clamp(min=1)
    ranks = pessimistic_rank(pos.detach(), neg.detach(), valid)
    return TaskOutput(loss, rank_sums(ranks, 1 + valid.sum(1)))


def ranking_metrics(sums: dict[str, float]) -> dict[str, float]:
    """MRR and Hits@k (with their random-score references) and the mean loss, from summed batches."""
    return {**rank_metrics(sums), "loss": sums.get("loss", float("nan")) / max(sums.get("batches", 0), 1)}


def masked_rows(batch: Batch, masker: Masker, generator: torch.Generator) -> MaskedRows:
    """The batch's masks from ``masker``, drawn once per batch: objectives sharing a masker share masks."""
    key = ("masks", masker)
    if key not in batch.cache:
        batch.cache[key] = masker(batch.tf, generator)
    return batch.cache[key]


def masked_view(model: Backbone, batch: Batch, graph: Tensor | None, masker: Masker,
                generator: torch.Generator) -> tuple[MaskedRows, RowRepresentation]:
    """The masked rows and their encoding, computed once per batch and masker, so that MCM and MV
    together cost one row-encoder pass, not two."""
    key = ("view", masker)
    if key not in batch.cache:
        masked = masked_rows(batch, masker, generator)
        batch.cache[key] = masked, model.encode_rows(masked.tf, masked.remove, graph)
    return batch.cache[key]


@dataclass
class CellFeatures:
    """What a cell's head reads: its column's output token beside its row's representation, [B, C,
    d + d'], held as the two parts. Built for every cell, that tensor (and, in the backward pass, a
    zero-filled one of its size for each column a head picked out of it) took a tenth of a light
    encoder's step; a head's first layer is linear, so it is applied part by part instead and the
    parts are joined only for the cells a per-column head reads."""

    cells: Tensor | None  # [B, C, d]; None: the heads read the row part alone (AM)
    rows: Tensor  # [B, d']

    def at(self, rows: Tensor | slice, pos: int) -> Tensor:
        """[N, d + d']: the features of column ``pos``'s cells in ``rows``."""
        row = self.rows[rows]
        return row if self.cells is None else torch.cat([self.cells[rows, pos], row], -1)

    def linear(self, layer: nn.Linear) -> Tensor:
        """``layer`` on every cell's features: [B, C, out]."""
        if self.cells is None:
            raise RelsslError("a head over every cell needs the cells' tokens")
        d = self.cells.shape[-1]
        return (F.linear(self.cells, layer.weight[:, :d], layer.bias)
                + F.linear(self.rows, layer.weight[:, d:]).unsqueeze(1))

    def stacked_linear(self, weight: Tensor, bias: Tensor, columns: Tensor | slice) -> Tensor:
        """[B, K, out]: column ``columns[k]``'s cells times its own ``weight[k]``ᵀ [out, d + d'] plus
        ``bias[k]`` (K columns' heads stacked into one batched product)."""
        k, out, _ = weight.shape
        d = 0 if self.cells is None else self.cells.shape[-1]
        row = (self.rows @ weight[:, :, d:].reshape(k * out, -1).T).view(-1, k, out)
        if self.cells is None:
            return row + bias
        return torch.einsum("bki,koi->bko", self.cells[:, columns], weight[:, :, :d]) + row + bias


def cell_features(rep: RowRepresentation) -> CellFeatures:
    """Each cell's output token beside the fused row representation."""
    return CellFeatures(rep.tokens, rep.fused)
