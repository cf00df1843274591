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

from relssl.errors import RelsslError
from relssl.graph.batch import Batch
from relssl.masking import Masker
from relssl.nn.backbone import Backbone
from relssl.objectives.base import BuildContext, CellFeatures, Objective, TaskOutput, cell_features, masked_view


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
    a vector for text/embedding columns.

    Beside each metric it scores the column's trivial reference on the same cells (for a category
    the best guess from what the input shows, see ``loss``; the training mean; the mean training
    vector), overall and per column, so a reader can tell learning from predicting the obvious."""

    def __init__(self, masker: Masker, in_dim: int):
        super().__init__()
        self.columns = masker.columns
        self.numerical = [pos for pos, col in enumerate(self.columns)
                          if col.maskable and col.stype == torch_frame.numerical]
        heads = {}
        for pos, col in enumerate(self.columns):
            if col.maskable:
                out = {torch_frame.categorical: col.num_categories, torch_frame.embedding: col.dim}.get(col.stype, 1)
                heads[pos] = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out))
        self.heads = nn.ModuleDict({str(pos): head for pos, head in heads.items() if pos not in self.numerical})
        # The numerical columns' heads are one stacked two-layer head, [K] columns deep, run as one
        # batched product: a wide table has dozens, and a call (and a parameter tensor) each
        # dominated the step. Initialised as the per-column heads they replace (same draws).
        for name, part in PER_COLUMN.items() if self.numerical else ():
            setattr(self, name, nn.Parameter(torch.stack([stackable(name, heads[pos].get_parameter(part))
                                                          for pos in self.numerical]).detach()))
        self._register_load_state_dict_pre_hook(self._stack_numerical_heads)
        for name, values in (("num_pos", self.numerical), ("num_index", [self.columns[p].index for p in self.numerical]),
                             ("num_mean", [self.columns[p].mean for p in self.numerical]),
                             ("num_std", [self.columns[p].std for p in self.numerical])):
            self.register_buffer(name, torch.tensor(values, dtype=torch.long if "pos" in name or "index" in name
                                                    else torch.float32), persistent=False)
        # the numerical columns as a slice where they are contiguous: indexing copies, and its gradient fills zeros
        contiguous = bool(self.numerical) and self.numerical == list(range(self.numerical[0], self.numerical[-1] + 1))
        self.num_slice = slice(self.numerical[0], self.numerical[-1] + 1) if contiguous else None
        self.num_keys = tuple(f"num_{name}/{self.columns[pos].name}" for name in ("sse", "ref", "count")
                              for pos in self.numerical)  # numerical_loss's accumulators
        self.majority = masker.majority  # pos -> training majority category
        self.runner_up = masker.runner_up  # pos -> the next most frequent (the majority of the others)
        for pos, vector in masker.mean_vector.items():  # moves with the model, never saved
            self.register_buffer(f"mean_vector_{pos}", vector, persistent=False)

    @property
    def num_columns(self) -> Tensor | slice:
        return self.num_pos if self.num_slice is None else self.num_slice

    def _stack_numerical_heads(self, state: dict, prefix: str, *args) -> None:
        """Weights saved before the numerical heads were stacked hold one head per column
        (``heads.<pos>.0.weight`` ...): stack them into today's parameters."""
        stack_numerical_heads(state, prefix, self.numerical)

    def head(self, x: Tensor, pos: int) -> Tensor:
        """Column ``pos``'s head on features ``x`` [N, in]."""
        if pos not in self.numerical:
            return self.heads[str(pos)](x)
        k = self.numerical.index(pos)
        h = torch.relu(x @ self.num_hidden_weight[k].T + self.num_hidden_bias[k])
        return (h @ self.num_out_weight[k] + self.num_out_bias[k]).unsqueeze(1)

    def loss(self, features: CellFeatures, target: Tensor, batch_tf, shown=None, removed: Tensor | None = None,
             changed_only: bool = False) -> tuple[Tensor, dict]:
        """Each head reads ``features`` of its column's cells flagged in ``target`` [B, C]; the
        true values come from the uncorrupted ``batch_tf``. Mean loss over all target cells.

        A categorical cell's reference is the best guess of a rule that sees what the model sees:
        the training majority when the row is not shown (``shown`` None) or the cell was
        ``removed``; otherwise, when every shown target cell was changed (``changed_only``, the
        ``replace`` mask: a replaced category always differs from the true one), the most
        frequent category other than the shown one, else the shown value itself (``bert``'s
        unchanged cells, denoising)."""
        sums = {}
        total = self.numerical_loss(features, target, batch_tf, sums)
        for key, head in self.heads.items():
            pos = int(key)
            col = self.columns[pos]
            kind = "emb" if col.stype == torch_frame.embedding else "cat"  # numerical columns: numerical_loss
            # every column's accumulators exist in every batch, so ranks and epochs share their keys
            add = _adder(sums, col.name, {"cat": ("correct", "ref", "count"), "emb": ("cos", "ref", "hit", "count")}[kind],
                         kind)
            rows = target[:, pos].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            out = head(features.at(rows, pos))
            if kind == "emb":
                feat = batch_tf.feat_dict[col.stype]
                truth = feat.values[rows, int(feat.offset[col.index]):int(feat.offset[col.index + 1])]
                cos, hit = embedding_scores(out, truth)
                total = total + (1 - cos).sum()
                ref = F.cosine_similarity(getattr(self, f"mean_vector_{pos}").expand_as(truth), truth, dim=-1)
                add(cos=cos.detach().sum(), ref=ref.sum(), hit=hit.sum(), count=rows.numel())
                continue
            truth = batch_tf.feat_dict[col.stype][rows, col.index]
            total = total + F.cross_entropy(out, truth, reduction="sum")
            guess = torch.full_like(truth, self.majority[pos])
            if shown is not None:
                value = shown.feat_dict[col.stype][rows, col.index]
                other = torch.where(value == self.majority[pos], self.runner_up[pos], self.majority[pos])
                visible = ~removed[rows, pos] if removed is not None else torch.ones_like(value, dtype=torch.bool)
                guess = torch.where(visible, other if changed_only else value, guess)
            add(correct=(out.argmax(-1) == truth).sum(), ref=(truth == guess).sum(), count=rows.numel())
        return total / target.sum().clamp(min=1), sums

    def numerical_loss(self, features: CellFeatures, target: Tensor, batch_tf, sums: dict) -> Tensor:
        """Summed squared error of every numerical target cell on standardised values, all columns'
        heads in one batched product; every column's accumulators put in ``sums`` as one tensor
        (relssl.metrics.sums)."""
        if not self.numerical:
            return features.rows.new_zeros(())
        h = torch.relu(features.stacked_linear(self.num_hidden_weight, self.num_hidden_bias, self.num_columns))
        out = torch.einsum("bki,ki->bk", h, self.num_out_weight) + self.num_out_bias
        mask = target[:, self.num_columns]
        truth = batch_tf.feat_dict[torch_frame.numerical][:, self.num_index]
        z = torch.where(mask, (truth - self.num_mean) / self.num_std, 0.0)  # unmasked cells may be missing
        err = torch.where(mask, (out.float() - z) ** 2, 0.0)
        # the training mean predicts z = 0; std² converts both back to the column's units
        per_column = torch.stack([err.detach().sum(0), (z ** 2).sum(0), mask.sum(0).to(err.dtype)])  # [3, K]
        sums[self.num_keys] = per_column.flatten()
        sums[("num_raw_sse", "num_raw_ref")] = (per_column[:2] * self.num_std ** 2).sum(1)
        return err.sum()


# The stacked numerical heads' parameters, each from this parameter of the per-column head it replaces.
PER_COLUMN = {"num_hidden_weight": "0.weight", "num_hidden_bias": "0.bias", "num_out_weight": "2.weight",
              "num_out_bias": "2.bias"}


def stackable(name: str, column: Tensor) -> Tensor:
    """A per-column head's part as one slice of stacked parameter ``name`` (the output layer has one
    unit, whose leading dimension the stack drops)."""
    return column[0] if name.startswith("num_out") else column


def stack_numerical_heads(state: dict, prefix: str, numerical: list[int], missing=None) -> None:
    """In place: ``prefix + heads.<pos>.{0,2}.{weight,bias}`` of every numerical column ``pos``, as
    saved before the heads were stacked, become ``prefix + num_*``. Also maps an optimizer's
    per-parameter moments keyed the same way; there a column whose head never took a step has no
    entry, and ``missing(name, k)`` gives what stands in for column k of stacked parameter ``name``."""
    if not legacy_layout(state, prefix, numerical):
        return
    keys = {name: [f"{prefix}heads.{pos}.{part}" for pos in numerical] for name, part in PER_COLUMN.items()}
    for name, names in keys.items():
        absent = [key for key in names if key not in state]
        if absent and missing is None:
            raise RelsslError(f"weights saved with one head per numerical column lack {absent[0]}")
        columns = [state.pop(key) if key in state else missing(name, k) for k, key in enumerate(names)]
        state[prefix + name] = torch.stack([stackable(name, c) for c in columns])


def legacy_layout(state: dict, prefix: str, numerical: list[int]) -> bool:
    """Whether ``state`` holds ``prefix``'s numerical heads one per column (saved before stacking)."""
    return any(f"{prefix}heads.{pos}.{part}" in state for pos in numerical for part in PER_COLUMN.values())


def _adder(sums: dict, column: str, names: tuple[str, ...], kind: str):
    """Zero ``kind_name/column`` accumulators; the returned function adds to them."""
    for name in names:
        sums.setdefault(f"{kind}_{name}/{column}", 0.0)

    def add(**values) -> None:
        for name, value in values.items():
            sums[f"{kind}_{name}/{column}"] += value
    return add


def cell_metrics(sums: dict[str, float]) -> dict[str, float]:
    """Pooled metrics over all target cells (``acc``, ``rmse`` on standardised values, ``rmse_raw``
    in the columns' units, ``emb_cos``, ``emb_r1``), each with its ``_ref``, then per column
    (``acc/<column>``, ``acc_ref/<column>``, ...)."""
    nan = float("nan")
    out = {"loss": sums.get("loss", nan) / max(sums.get("batches", 0), 1)}
    pooled: dict[str, float] = {}
    columns: dict[str, dict[str, float]] = {}
    for key, value in sums.items():
        if "/" in key:
            name, column = key.split("/", 1)
            pooled[name] = pooled.get(name, 0.0) + value
            columns.setdefault(column, {})[name] = value

    def scores(s: dict[str, float]) -> dict[str, float]:
        got = {}
        if s.get("cat_count"):
            got.update(acc=s["cat_correct"] / s["cat_count"], acc_ref=s["cat_ref"] / s["cat_count"])
        if s.get("num_count"):
            got.update(rmse=math.sqrt(s["num_sse"] / s["num_count"]), rmse_ref=math.sqrt(s["num_ref"] / s["num_count"]))
        if s.get("emb_count"):
            got.update(emb_cos=s["emb_cos"] / s["emb_count"], emb_cos_ref=s["emb_ref"] / s["emb_count"],
                       emb_r1=s["emb_hit"] / s["emb_count"])
        return got

    out.update(scores(pooled))
    if pooled.get("num_count"):
        out["rmse_raw"] = math.sqrt(sums["num_raw_sse"] / pooled["num_count"])
        out["rmse_raw_ref"] = math.sqrt(sums["num_raw_ref"] / pooled["num_count"])
    if len(columns) > 1:
        for column, s in columns.items():
            out.update({f"{name}/{column}": v for name, v in scores(s).items()})
    return out


class CellReconstruction(Objective):
    """A task that predicts cells with CellHeads under a masker (MCM, AM, DAE): the run's masker
    unless the task builds another."""

    masks_cells = True

    @classmethod
    def build(cls, ctx: BuildContext) -> "CellReconstruction":
        return cls(ctx.run_masker(), 2 * ctx.channels)

    def __init__(self, masker: Masker, features: int):
        """``features``: the width the heads read (a cell's token beside the fused row: 2 channels)."""
        super().__init__()
        self.masker = masker
        self.heads = CellHeads(masker, features)

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return cell_metrics(sums)


class MaskedCellModelling(CellReconstruction):
    name = "mcm"

    def forward(self, model: Backbone, batch: Batch, graph: Tensor | None, generator: torch.Generator) -> TaskOutput:
        masked, rep = masked_view(model, batch, graph, self.masker, generator)
        # Each cell's head sees its own column's output token and the fused row representation.
        loss, sums = self.heads.loss(cell_features(rep), masked.target, batch.tf, masked.tf, masked.remove,
                                     changed_only=self.masker.mask_type == "replace")
        return TaskOutput(loss, sums)

    def predict_column(self, model: Backbone, batch: Batch, graph: Tensor | None, pos: int,
                       generator: torch.Generator) -> Tensor:
        """The head's output for column ``pos`` of every row with that cell masked, and its mask group
        with it, so no twin gives it away (replaced under ``replace``, removed otherwise): how
        `relssl experiment feat2vec` ranks MCM's guesses."""
        group = (self.masker.unit == self.masker.unit[pos]).to(batch.rows.device)
        hide = group.unsqueeze(0).expand(len(batch.rows), -1).clone()
        if self.masker.mask_type == "replace":
            tf, remove = self.masker.replace(batch.tf, hide, generator)[0], None
        else:
            tf, remove = batch.tf, hide
        rep = model.encode_rows(tf, remove, graph)
        return self.heads.head(cell_features(rep).at(slice(None), pos), pos)
