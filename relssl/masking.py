"""Cell masks shared by every masking pretext task, and the three mask types of DESIGN.md.

- replace: the cell takes the same column's value from another training row (the column's
  empirical distribution); a categorical draw always differs from the original value when the
  column has more than one category.
- bert: of the chosen cells, 80 % remove, 10 % replace, 10 % left unchanged (all predicted).
- remove: the cell is shown as a learned per-column [MASK] embedding (see RowEncoder).

Text and embedding cells are masked like the others: replace draws another training row's
vector of the column; missing vectors (all zeros) are never chosen as targets.

Mask groups: columns that (nearly) copy each other (IBM AML's Amount Paid and Amount Received are
equal in ~99 % of rows) are chosen together, as one unit, or a masked cell is simply read off its
twin and masked cell modelling becomes a copy task. Each cell of a chosen group is then corrupted
by the mask type on its own (a replaced group draws each column's value independently).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
import torch_frame
from torch_frame import TensorFrame
from torch_frame.data import MultiEmbeddingTensor
from torch_frame.data.stats import StatType

from relssl.data.encoding import EncodedTable, category_counts
from relssl.errors import RelsslError

MASK_TYPES = ("replace", "bert", "remove")


@dataclass
class MaskedRows:
    tf: TensorFrame  # corrupted copy of the rows (replaced cells hold other rows' values)
    target: Tensor  # [B, C] bool: cells the model must predict
    remove: Tensor  # [B, C] bool: cells shown as [MASK]
    corrupted: Tensor  # [B, C] bool: cells whose input differs from the original


class Masker:
    """Draws masks per batch from a generator, so a seed fixes every mask of a run."""

    def __init__(self, enc: EncodedTable, train_rows: Tensor, mask_type: str = "replace",
                 cells_per_row: int = 1, prob: float | None = None, groups: list[list[int]] = (),
                 exclude: list[int] = ()):
        if mask_type not in MASK_TYPES:
            raise RelsslError(f"--mask '{mask_type}': expected one of {', '.join(MASK_TYPES)}")
        if prob is not None and not 0 < prob <= 1:
            raise RelsslError(f"--mask-prob {prob}: expected a probability in (0, 1]")
        self.mask_type, self.cells_per_row, self.prob = mask_type, cells_per_row, prob
        self.columns = enc.columns
        self.maskable = torch.tensor([c.maskable for c in enc.columns])
        # unit[pos]: the unit a column is chosen with, the position of its group's first column
        self.unit = torch.arange(len(enc.columns))
        for group in groups:
            self.unit[list(group)] = min(group)
        tf = enc.tf
        # Replacement pools from the training split only: non-missing numbers, category frequencies,
        # training rows with a vector (embedding values are gathered from the table when drawn).
        self.cat_cumcount, self.emb_pool = {}, {}
        pools = []
        # The trivial predictions that masked-cell metrics are reported beside (by column position):
        # the training majority and runner-up classes, the mean training vector (numbers: the mean).
        self.majority, self.runner_up, self.mean_vector = {}, {}, {}
        for pos, col in enumerate(enc.columns):
            if col.stype == torch_frame.numerical:
                values = tf.feat_dict[col.stype][train_rows, col.index]
                known = values[~torch.isnan(values)]
                self.maskable[pos] &= len(known) > 0  # nothing to draw a replacement from, nor to predict
                pools.append(known if len(known) else torch.tensor([torch.nan]))  # a placeholder, never drawn
            elif col.stype == torch_frame.categorical and col.num_categories > 0:
                counts = category_counts(enc, col)
                self.cat_cumcount[col.index] = torch.cumsum(counts, 0)
                top = torch.sort(counts, descending=True, stable=True).indices[:2]  # ties: the first category
                self.majority[pos], self.runner_up[pos] = int(top[0]), int(top[-1])
            elif col.stype == torch_frame.embedding:
                feat = tf.feat_dict[col.stype]
                self.emb_values = feat.values
                present = embedding_present(feat, col.index)[train_rows]
                self.emb_pool[col.index] = train_rows[present]
                self.maskable[pos] &= bool(present.any())
                if present.any():
                    lo, hi = int(feat.offset[col.index]), int(feat.offset[col.index + 1])
                    self.mean_vector[pos] = self.emb_values[self.emb_pool[col.index], lo:hi].float().mean(0)
        self.maskable[list(exclude)] = False  # never chosen, so never a target: they stay inputs
        if not self.maskable.any():
            raise RelsslError("no numerical, categorical, text or embedding column to mask"
                              + (" besides --mask-exclude's" if len(exclude) else ""))
        # The numerical columns' pools end to end, so one draw replaces every chosen numerical cell of
        # a batch at once (a wide table has dozens of numerical columns; one draw each dominated).
        self.num_pos = torch.tensor([p for p, c in enumerate(enc.columns) if c.stype == torch_frame.numerical],
                                    dtype=torch.long)
        self.num_index = torch.tensor([enc.columns[p].index for p in self.num_pos.tolist()], dtype=torch.long)
        self.num_pool = torch.cat(pools) if pools else torch.zeros(0)
        self.num_pool_size = torch.tensor([len(v) for v in pools], dtype=torch.long)
        self.num_pool_start = torch.cumsum(self.num_pool_size, 0) - self.num_pool_size

    def observed(self, tf: TensorFrame) -> Tensor:
        """[B, C] cells with a known value (a target exists), in the encoder's column order."""
        parts = []
        for stype in tf.stypes:
            feat = tf.feat_dict[stype]
            if stype == torch_frame.numerical:
                parts.append(~torch.isnan(feat))
            elif stype == torch_frame.categorical:
                parts.append(feat >= 0)
            elif stype == torch_frame.embedding:
                parts.append(torch.stack([embedding_present(feat, j) for j in range(feat.num_cols)], dim=1))
            else:
                parts.append(torch.zeros(feat.shape[:2], dtype=torch.bool, device=feat.device))
        return torch.cat(parts, dim=1) & self.maskable.to(parts[0].device)

    def choose(self, valid: Tensor, generator: torch.Generator) -> Tensor:
        """Cells to mask: ``cells_per_row`` units (a column, or a mask group) uniformly among a row's
        units with a valid cell, or each such unit with probability ``prob``; then every valid cell
        of a chosen unit."""
        unit = self.unit.to(valid.device).expand_as(valid)
        # in uint8: CUDA has no bool scatter_reduce
        valid_unit = torch.zeros_like(valid, dtype=torch.uint8).scatter_reduce(1, unit, valid.to(torch.uint8), "amax").bool()
        u = torch.rand(valid.shape, generator=generator).to(valid.device)
        if self.prob is not None:
            chosen = valid_unit & (u < self.prob)
        else:
            k = min(self.cells_per_row, valid.shape[1])
            score = torch.where(valid_unit, u, torch.full_like(u, -1.0))
            top = score.topk(k, dim=1)
            chosen = torch.zeros_like(valid)
            chosen.scatter_(1, top.indices, top.values >= 0)
        return chosen.gather(1, unit) & valid

    def __call__(self, tf: TensorFrame, generator: torch.Generator) -> MaskedRows:
        target = self.choose(self.observed(tf), generator)
        if self.mask_type == "remove":
            remove, replace = target, torch.zeros_like(target)
        elif self.mask_type == "replace":
            remove, replace = torch.zeros_like(target), target
        else:  # bert
            u = torch.rand(target.shape, generator=generator).to(target.device)
            remove, replace = target & (u < 0.8), target & (u >= 0.8) & (u < 0.9)
        corrupted_tf, changed = self.replace(tf, replace, generator)
        return MaskedRows(corrupted_tf, target, remove, remove | changed)

    def replace(self, tf: TensorFrame, cells: Tensor, generator: torch.Generator) -> tuple[TensorFrame, Tensor]:
        """Copy of ``tf`` with ``cells`` replaced by draws from the training distribution."""
        feat_dict = dict(tf.feat_dict)
        changed = torch.zeros_like(cells)
        if len(self.num_pos):
            num_pos = self.num_pos.to(cells.device)
            num_cells = cells[:, num_pos]
            if num_cells.any():  # a draw for every numerical cell of the batch: one call, not one per column
                u = torch.rand(num_cells.shape, generator=generator, dtype=torch.float64)
                pick = self.num_pool_start + (u * self.num_pool_size).long().clamp(max=self.num_pool_size - 1)
                feat = feat_dict[torch_frame.numerical] = tf.feat_dict[torch_frame.numerical].clone()
                index = self.num_index.to(feat.device)
                old, new = feat[:, index], self.num_pool[pick].to(feat.device)
                feat[:, index] = torch.where(num_cells, new, old)
                changed[:, num_pos] = num_cells & (new != old)
        for pos, col in enumerate(self.columns):
            if col.stype == torch_frame.numerical:
                continue
            rows = cells[:, pos].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            feat = feat_dict[col.stype]
            if feat is tf.feat_dict[col.stype]:
                feat = feat_dict[col.stype] = feat.clone()
            if col.stype == torch_frame.embedding:
                changed[rows, pos] = self._replace_vectors(feat, col.index, rows, generator)
                continue
            old = feat[rows, col.index]
            new = draw_other_category(self.cat_cumcount[col.index], old.cpu(), generator).to(feat.device)
            feat[rows, col.index] = new
            changed[rows, pos] = new != old
        return TensorFrame(feat_dict, tf.col_names_dict), changed

    def _replace_vectors(self, feat: MultiEmbeddingTensor, j: int, rows: Tensor, generator: torch.Generator) -> Tensor:
        """Overwrite column ``j`` of ``rows`` in place (``feat`` is the caller's clone) with other
        training rows' vectors; returns which rows changed."""
        pool = self.emb_pool[j]
        pick = pool[torch.randint(len(pool), (rows.numel(),), generator=generator)]
        lo, hi = int(feat.offset[j]), int(feat.offset[j + 1])
        new = self.emb_values[pick, lo:hi].to(feat.values.device)
        changed = (feat.values[rows, lo:hi] != new).any(1)
        feat.values[rows, lo:hi] = new
        return changed


def embedding_present(feat: MultiEmbeddingTensor, j: int) -> Tensor:
    """[B] rows whose vector in column ``j`` is not the all-zero 'missing' vector."""
    return feat.values[:, int(feat.offset[j]):int(feat.offset[j + 1])].ne(0).any(1)


def draw_other_category(cumcount: Tensor, old: Tensor, generator: torch.Generator) -> Tensor:
    """Draw categories from their training frequencies conditioned on differing from ``old``.

    Exact and vectorised: draw u uniformly over the total count minus the original category's
    count, then skip over the original category's interval of the cumulative counts.
    """
    total = cumcount[-1]
    count = torch.diff(cumcount, prepend=cumcount.new_zeros(1))
    if len(cumcount) < 2:
        return old.clone()
    old_count = count[old]
    start = cumcount[old] - old_count
    u = torch.rand(old.shape, generator=generator, dtype=torch.float64) * (total - old_count)
    u = torch.where(u >= start, u + old_count, u)
    return torch.searchsorted(cumcount, u, right=True).clamp(max=len(cumcount) - 1)


def twin_columns(enc: EncodedTable, rows: Tensor, threshold: float = 0.95) -> list[tuple[str, str, float]]:
    """Pairs of numerical or categorical columns whose values are equal in more than ``threshold``
    of ``rows`` (where both are known), with that share: one is recoverable from the other.
    Categories are compared by value, not by vocabulary index."""
    tf = enc.tf
    found = []
    for stype in (torch_frame.numerical, torch_frame.categorical):
        cols = [c for c in enc.columns if c.stype == stype]
        if len(cols) < 2:
            continue
        values = tf.feat_dict[stype][rows]
        if stype == torch_frame.categorical:  # indices into each column's own vocabulary -> shared ids
            vocab: dict = {}
            ids = []
            for c in cols:
                names = enc.col_stats[c.name][StatType.COUNT][0]
                lookup = torch.tensor([vocab.setdefault(n, len(vocab)) for n in names] + [-1], dtype=torch.long)
                ids.append(lookup[values[:, c.index]])  # index -1 (missing) -> the appended -1
            values, known = torch.stack(ids, 1), torch.stack(ids, 1) >= 0
            index = {c.name: i for i, c in enumerate(cols)}
        else:
            known = ~torch.isnan(values)
            index = {c.name: c.index for c in cols}
        for i, a in enumerate(cols):
            for b in cols[i + 1:]:
                both = known[:, index[a.name]] & known[:, index[b.name]]
                if both.any():
                    share = float((values[both, index[a.name]] == values[both, index[b.name]]).double().mean())
                    if share > threshold:
                        found.append((a.name, b.name, share))
    return found
