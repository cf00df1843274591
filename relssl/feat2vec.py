"""Feat2Vec (Armona, González-Brenes, Edezath): one embedding space for every feature group of a row.

- A **feature group** is one or more event columns, or an entity id (``@source``, ``@target``),
  with its own extractor into a shared d-dimensional space: categorical columns through an
  embedding table, numerical and timestamp columns through pytorch-frame's per-column encoders,
  embedding-stype (text, image) vectors through a linear map; then a small MLP per group over the
  concatenated cells. Id groups are embedding tables over entities. On a database, a group may
  also take features of other tables through the row's foreign keys (``lookup_values``):
  ``@movieId``, the row a key references, and ``movieId.genres``, a categorical column of that
  row, each through an embedding table of its own. A referenced row's columns belong in the group
  of its id (``movie=@movieId+movieId.genres``): in separate groups, ranking movies would read the
  true movie's genres from the row (``parse_groups`` refuses it).
- **Score** (structured deep-in factorisation machine): the sum over pairs of groups of the dot
  products of their embeddings, s(x) = Σ_{i<j} <e_i, e_j>; probability σ(s). Ranking the values v
  of one group g for a row needs only the terms with g: <e_g(v), Σ_{i≠g} e_i>.
- **Implicit two-step negative sampling**: corrupt group g with probability ∝ (its extractor's
  parameter count)^α1, replacing its value by a draw from the group's training-split value
  frequencies raised to α2. The group embeddings are independent of one another, so a negative
  costs one group embedding: the score of the other groups is reused.
- **NCE**: p(real | x) = σ(s_g(x) − log(k·q_g(v))), with q_g(v) the noise probability of the
  value v of the corrupted group g and s_g the terms of the score that involve g plus a learned
  per-group bias (see ``feat2vec_step``). A real row enters once per negative, with the correction
  of that negative's group at the row's own value: s_g then estimates log p(v | rest), which is
  what ranking candidate values needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_frame
from torch import Tensor, nn
from torch_frame import TensorFrame
from torch_frame.data.stats import StatType

from relssl.data.encoding import ColumnInfo, EncodedTable
from relssl.data.prepare import PreparedData
from relssl.data.splits import TRAIN
from relssl.errors import RelsslError
from relssl.metrics.ranking import percentile_ranks

ID_GROUPS = ("@source", "@target")  # the event's source / target entity, when the data has keys
TIMESTAMP_PARTS = 7  # year, month, day, day of week, hour, minute, second (pytorch-frame)


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    columns: tuple[str, ...]  # event columns and lookups (``lookup_values``), or one of ID_GROUPS alone
    # An event graph's entity id group ("@source" or "@target"); a database's foreign key named
    # source is a lookup, "@source" too.
    entity: str | None = None


def lookup_values(prep: PreparedData) -> dict[str, Tensor]:
    """A database seed table's groups from other tables: name -> [rows] int64 value (-1: none).
    ``@COLS`` is the row the foreign key on COLS (comma-joined when composite) references;
    ``COLS.COLUMN`` that row's category of a categorical COLUMN. Empty for an event table."""
    db = prep.database
    if db is None:
        return {}
    out = {}
    for (child, key), (parent, rows) in db.links.items():
        if child != db.seed_table:
            continue
        cols = key.split(" -> ")[0].replace("+", ",")  # a composite key's columns: "+" joins a group's members
        out[f"@{cols}"] = rows.long()
        enc = db.tables[parent]
        for col in enc.columns if enc is not None else []:
            if col.stype == torch_frame.categorical:
                category = column_values(enc.tf, col)[:, 0].long()
                out[f"{cols}.{col.name}"] = torch.where(rows >= 0, category[rows.clamp(min=0)], -1)
    return out


def parse_groups(spec: str | dict | None, prep: PreparedData, option: str = "--groups") -> list[FeatureGroup]:
    """Feature groups from ``"NAME=COL+COL;COL;@target"`` (CLI) or ``{NAME: [COL, ...]}`` (YAML).

    Default: one group per feature column, plus ``@source`` and ``@target`` when rows link entities.
    Columns left out of every group are not used.
    """
    columns = [c.name for c in prep.events.columns]  # the encoded order: the same from the cache
    lookups = list(lookup_values(prep))
    available = [*columns, *(ID_GROUPS if prep.has_graph else ()), *lookups]

    def entity(col: str) -> str | None:  # an event graph's entity id (a database has lookups instead)
        return col if prep.has_graph and col in ID_GROUPS else None
    if spec is None or spec == "" or spec == {}:
        return [FeatureGroup(name, (name,), entity(name)) for name in available
                if name not in lookups or name.startswith("@")]
    if isinstance(spec, str):
        items = {}
        for part in (p.strip() for p in spec.split(";")):
            if not part:
                continue
            name, _, cols = part.partition("=") if "=" in part else (part, "", part)
            if name.strip() in items:
                raise RelsslError(f"{option}: group '{name.strip()}' is declared twice")
            items[name.strip()] = [c.strip() for c in cols.split("+")]
    elif isinstance(spec, dict):
        items = {str(k): [v] if isinstance(v, str) else list(v or []) for k, v in spec.items()}
    else:
        raise RelsslError(f"{option}: expected 'NAME=COL+COL;COL;...' or a mapping of group names to columns")
    groups, seen = [], {}
    for name, cols in items.items():
        if not name or not cols or not all(cols):
            raise RelsslError(f"{option}: group '{name}' needs a name and at least one column")
        for col in cols:
            if col not in available:
                hint = " (the data has no source/target keys)" if col in ID_GROUPS else ""
                raise RelsslError(f"{option}: column '{col}' of group '{name}' is not a feature column{hint}; "
                                  f"expected some of {available}")
            if col in seen:
                raise RelsslError(f"{option}: column '{col}' is in groups '{seen[col]}' and '{name}'; "
                                  f"a column belongs to one group")
            seen[col] = name
        if len(cols) > 1 and any(entity(c) for c in cols):
            raise RelsslError(f"{option}: group '{name}': an entity id ({'/'.join(ID_GROUPS)}) is a group of its own")
        groups.append(FeatureGroup(name, tuple(cols), entity(cols[0])))
    if len(groups) < 2:
        raise RelsslError(f"{option}: Feat2Vec scores pairs of groups; declare at least two (got {len(groups)})")
    for col, name in seen.items():  # a referenced row's column apart from its id would give the row away
        key = col.split(".", 1)[0] if col in lookups and not col.startswith("@") else None
        if key is not None and f"@{key}" in seen and seen[f"@{key}"] != name:
            raise RelsslError(f"{option}: '{col}' (group '{name}') describes the row @{key} references (group "
                              f"'{seen[f'@{key}']}'): ranking one would read the answer from the other; put them "
                              f"in one group")
    return groups


def find_group(groups: list[FeatureGroup], name: str, option: str) -> int:
    names = [g.name for g in groups]
    if name not in names:
        raise RelsslError(f"{option} '{name}': not a feature group; expected one of {names}")
    return names.index(name)


def column_values(tf: TensorFrame, col: ColumnInfo) -> Tensor:
    """[N, w] float64 values of one column as the encoder sees them (categories as indices, -1 unknown)."""
    feat = tf.feat_dict[col.stype]
    if col.stype == torch_frame.embedding:
        values = feat.values[:, feat.offset[col.index]:feat.offset[col.index + 1]]
    elif col.stype == torch_frame.timestamp:
        values = feat[:, col.index, :]
    else:
        values = feat[:, col.index:col.index + 1]
    return values.double()


def group_value_ids(prep: PreparedData, group: FeatureGroup) -> tuple[Tensor, Tensor]:
    """Per row, the id of its value of ``group`` among the group's distinct values (all rows), and
    per distinct value whether a candidate can rank it: no unknown category in it."""
    if group.entity:
        ids = prep.src if group.entity == "@source" else prep.dst
        values = ids.double().unsqueeze(1)
        rankable_rows = torch.ones(len(ids), dtype=torch.bool)
    else:
        cols = [c for c in prep.events.columns if c.name in group.columns]
        lookups = lookup_values(prep)
        looked_up = [lookups[c] for c in group.columns if c in lookups]
        values = torch.cat([column_values(prep.events.tf, c) for c in cols] +
                           [v.double().unsqueeze(1) for v in looked_up], dim=1)
        rankable_rows = torch.ones(len(values), dtype=torch.bool)
        for c in cols:
            if c.stype == torch_frame.categorical:
                rankable_rows &= column_values(prep.events.tf, c)[:, 0] >= 0
        for v in looked_up:  # an unlinked row, or an unknown category
            rankable_rows &= v >= 0
        values = torch.nan_to_num(values, nan=float("inf"))  # NaN != NaN: one id for missing
    _, value_id = torch.unique(values, dim=0, return_inverse=True)
    rankable = torch.zeros(int(value_id.max()) + 1, dtype=torch.bool)
    rankable[value_id[rankable_rows]] = True
    return value_id, rankable


class NoiseSampler:
    """The two-step noise distribution of Feat2Vec, from training rows only.

    Step 1: group g with probability ∝ params_g^α1 (always ``target`` in supervised mode).
    Step 2: a value v of g with probability q_g(v) ∝ count_g(v)^α2 over the training split. A
    value is carried by a representative training row holding it, whose group embedding is the
    value's embedding. Step 2 is one inverse-CDF draw over the groups' concatenated cumulative
    probabilities (group g's segment spans (g, g + 1]): no loop over rows or groups.
    """

    def __init__(self, value_ids: list[Tensor], rankable: list[Tensor], train_rows: Tensor, params: Tensor,
                 alpha1: float = 0.25, alpha2: float = 0.75, target: int | None = None):
        self.group_prob = params.double() ** alpha1
        if target is not None:
            self.group_prob = torch.zeros_like(self.group_prob)
            self.group_prob[target] = 1.0
        self.group_prob /= self.group_prob.sum()
        self.value_ids = torch.stack(value_ids, dim=1)  # [N, G]
        cum, rep, flat_logq, start, log_q, counts, candidates = [], [], [], [0], [], [], []
        for g, (ids, ok) in enumerate(zip(value_ids, rankable)):
            train_ids = ids[train_rows]
            count = torch.bincount(train_ids, minlength=len(ok)).double()
            support = (count > 0).nonzero().squeeze(1)
            weight = count[support] ** alpha2
            z = weight.sum()
            # Values unseen in training (real rows of later splits) get the noise probability of a value seen once.
            log_q.append(torch.where(count > 0, count ** alpha2, torch.ones_like(count)).div(z).log())
            c = torch.cumsum(weight, 0)
            cum.append(g + c / c[-1])
            first = torch.full((len(ok),), len(train_rows), dtype=torch.long)
            first.scatter_reduce_(0, train_ids, torch.arange(len(train_rows)), "amin")
            rep.append(train_rows[first[support]])
            flat_logq.append(log_q[-1][support])
            start.append(start[-1] + len(support))
            counts.append(count)
            keep = support[ok[support]]
            candidates.append((keep, train_rows[first[keep]]))
        self.cum, self.rep, self.flat_logq = torch.cat(cum), torch.cat(rep), torch.cat(flat_logq)
        self.start = torch.tensor(start)
        self.log_q = log_q  # per group: [V_g] log noise probability of every value id
        self.all_log_q = torch.cat(log_q)
        self.value_offset = torch.cumsum(torch.tensor([0] + [len(q) for q in log_q[:-1]]), 0)
        self.train_counts = counts  # per group: [V_g] training count of every value id
        self.candidates = candidates  # per group: (value ids that can be ranked, a training row holding each)

    def entropy(self) -> Tensor:
        """[G] entropy (nats) of each group's training value frequencies."""
        out = []
        for count in self.train_counts:
            p = count[count > 0] / count.sum()
            out.append(-(p * p.log()).sum())
        return torch.stack(out)

    def sample(self, n: int, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """[n, k] corrupted group, representative row of the drawn value, and its log noise probability."""
        group = torch.multinomial(self.group_prob, n * k, replacement=True, generator=generator)
        u = torch.rand(n * k, generator=generator, dtype=torch.float64)
        at = torch.searchsorted(self.cum, group + u, right=True)
        at = torch.minimum(torch.maximum(at, self.start[group]), self.start[group + 1] - 1)
        return group.view(n, k), self.rep[at].view(n, k), self.flat_logq[at].view(n, k)

    def true_log_q(self, rows: Tensor, group: Tensor) -> Tensor:
        """[n, k] log noise probability of each row's own value of the group ``group`` [n, k]."""
        ids = self.value_ids[rows.unsqueeze(1).expand_as(group), group]
        return self.all_log_q[self.value_offset[group] + ids]


def column_group_params(cols: list[ColumnInfo], col_stats: dict, channels: int) -> int:
    """Parameters the (shared, per-column) cell encoders spend on these columns."""
    per_col = {
        torch_frame.categorical: lambda c: c.num_categories * channels,
        torch_frame.numerical: lambda c: 2 * channels,
        torch_frame.timestamp: lambda c: (TIMESTAMP_PARTS * 8 + 1) * channels,
        torch_frame.embedding: lambda c: (col_stats[c.name][StatType.EMB_DIM] + 1) * channels,
    }
    return sum(per_col[c.stype](c) for c in cols)


@dataclass
class RowIds:
    """Rows' ids that group extractors look up: entity ids (event graph), lookups' value ids (database)."""

    src: Tensor | None
    dst: Tensor | None
    lookups: Tensor  # [B, L] each lookup's value id (``Feat2Vec.lookup_names``)

    def at(self, index: Tensor) -> "RowIds":
        return RowIds(None if self.src is None else self.src[index], None if self.dst is None else self.dst[index],
                      self.lookups[index])


class Feat2VecHead(nn.Module):
    """Group extractors on top of per-cell embeddings [B, C, d], and the factorisation-machine score."""

    def __init__(self, groups: list[FeatureGroup], enc: EncodedTable, channels: int, num_entities: int,
                 lookup_sizes: dict[str, int] | None = None):
        super().__init__()
        self.groups = groups
        names = [c.name for c in enc.columns]
        lookup_sizes = lookup_sizes or {}
        lookup_index = {n: i for i, n in enumerate(lookup_sizes)}
        self.positions = [[names.index(c) for c in g.columns if c in names] if not g.entity else [] for g in groups]
        self.lookups = [[lookup_index[c] for c in g.columns if c in lookup_index] for g in groups]
        # Each lookup of a group: an embedding table over its values, its output one more input of the extractor.
        self.lookup_tables = nn.ModuleList(nn.ModuleList(nn.Embedding(lookup_sizes[c], channels) for c in g.columns
                                                         if c in lookup_index) for g in groups)
        for tables in self.lookup_tables:
            for table in tables:
                nn.init.normal_(table.weight, std=channels ** -0.5)
        self.extract = nn.ModuleList()
        params = []
        for g, pos, tables in zip(groups, self.positions, self.lookup_tables):
            if len(tables) == 1 and not pos:  # one lookup alone: its embedding is the group's
                module, own = nn.Identity(), sum(p.numel() for p in tables.parameters())
            elif tables:
                module = nn.Sequential(nn.Linear((len(pos) + len(tables)) * channels, channels), nn.ReLU(),
                                       nn.Linear(channels, channels))
                own = column_group_params([enc.columns[p] for p in pos], enc.col_stats, channels) + sum(
                    p.numel() for p in tables.parameters())
            elif g.entity:
                module = nn.Embedding(num_entities, channels)
                nn.init.normal_(module.weight, std=channels ** -0.5)
                own = 0
            else:
                module = nn.Sequential(nn.Linear(len(pos) * channels, channels), nn.ReLU(),
                                       nn.Linear(channels, channels))
                own = column_group_params([enc.columns[p] for p in pos], enc.col_stats, channels)
            self.extract.append(module)
            params.append(own + sum(p.numel() for p in module.parameters()))
        self.params = torch.tensor(params)  # each group's extractor size, for step 1 of the noise
        self.channels = channels
        self.bias = nn.Parameter(torch.zeros(len(groups)))  # per-group log normaliser (see feat2vec_step)

    def embed_group(self, g: int, cells: Tensor, ids: RowIds) -> Tensor:
        """[B, d] embeddings of group ``g`` from cell embeddings [B, C, d] and the rows' ids."""
        group = self.groups[g]
        if group.entity:
            return self.extract[g](ids.src if group.entity == "@source" else ids.dst)
        parts = [cells[:, self.positions[g]].flatten(1)] if self.positions[g] else []
        parts += [table(ids.lookups[:, i]) for i, table in zip(self.lookups[g], self.lookup_tables[g])]
        return self.extract[g](torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

    def embed(self, cells: Tensor, ids: RowIds) -> Tensor:
        """[B, G, d] every group's embedding."""
        return torch.stack([self.embed_group(g, cells, ids) for g in range(len(self.groups))], dim=1)

    def embed_each(self, group: Tensor, cells: Tensor, ids: RowIds) -> Tensor:
        """[B, d] the embedding of group ``group[b]`` of row b only: one extractor call per group."""
        out = cells.new_zeros(len(group), self.channels)
        for g in range(len(self.groups)):
            at = (group == g).nonzero().squeeze(1)
            if at.numel():
                out[at] = self.embed_group(g, cells[at], ids.at(at)).to(out.dtype)  # bf16 under autocast
        return out


def nce_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """NCE on noise-corrected logits [B, K]: −log σ(pos) for the real row (once per negative,
    averaged), −log(1 − σ(neg)) summed over its K negatives; mean over rows."""
    return (F.softplus(-pos).mean(1) + F.softplus(neg).sum(1)).mean()


@dataclass
class Feat2VecStep:
    loss: Tensor
    sums: dict[str, float]


def feat2vec_step(emb: Tensor, neg_emb: Tensor, group: Tensor, pos_log_q: Tensor, neg_log_q: Tensor,
                  bias: Tensor, k: int) -> Feat2VecStep:
    """NCE between real rows ``emb`` [B, G, d] and their negatives, where negative j of row b has
    group g = ``group[b, j]`` replaced by ``neg_emb[b, j]`` [B, K, d].

    The FM score of a row is <e_g, r_g> + (the pairs without g), r_g = Σ_{i≠g} e_i. A real row and
    its corruption share the pairs without g, so each pair is compared on <e_g, r_g> + b_g alone,
    minus log(k·q_g(v)) of its own value v: one learned bias b_g per group stands in for the log
    normaliser of p(v | rest), which differs between groups (a near-deterministic category next
    to an unpredictable account id) and which one whole-row score could not match for all groups.
    """
    own = emb.gather(1, group.unsqueeze(-1).expand(*group.shape, emb.shape[-1]))  # [B, K, d]
    rest = emb.sum(1, keepdim=True) - own
    pos, neg = (own * rest).sum(-1), (neg_emb * rest).sum(-1)
    log_k = math.log(k)
    loss = nce_loss(pos + bias[group] - pos_log_q - log_k, neg + bias[group] - neg_log_q - log_k)
    # How often the real row outscores its corrupted copy (ties, e.g. the same value drawn, count as failures).
    beats = (pos.detach() > neg.detach()).double()
    return Feat2VecStep(loss, {"pair_correct": float(beats.sum()), "pair_count": float(beats.numel())})


def rank_group(emb: Tensor, candidates: Tensor, group: int, truth: Tensor) -> Tensor:
    """Percentile ranks (see relssl.metrics.ranking.percentile_ranks) of each row's true candidate
    ``truth`` [B] among all ``candidates`` [V, d] of ``group``, by the row's score with that value:
    the terms of the score that do not involve the group are the same for every candidate."""
    rest = emb.sum(1) - emb[:, group]
    return percentile_ranks(rest @ candidates.T, truth)


class Feat2Vec(nn.Module):
    """Head, noise sampler and the event data they draw from; the cell encoder is passed in, so the
    same task runs on its own cell encoders (``relssl feat2vec``) or on a backbone's shared ones
    (``--objectives feat2vec``)."""

    def __init__(self, prep: PreparedData, groups: list[FeatureGroup], channels: int, negatives: int = 5,
                 alpha1: float = 0.25, alpha2: float = 0.75, target: str | None = None, option: str = "--target"):
        super().__init__()
        if negatives < 1:
            raise RelsslError(f"negatives {negatives}: expected a positive number of negatives per row")
        for name, alpha in (("alpha1", alpha1), ("alpha2", alpha2)):
            if not 0 <= alpha <= 1:
                raise RelsslError(f"{name} {alpha}: expected an exponent in [0, 1]")
        self.groups, self.negatives = groups, negatives
        self.target = None if target is None else find_group(groups, target, option)
        lookups = lookup_values(prep)
        # Every lookup a group uses, as value ids 0..V-1 (the embedding tables' rows).
        self.lookup_names = [c for c in lookups if any(c in g.columns for g in groups)]
        lookup_ids = [torch.unique(lookups[c], return_inverse=True)[1] for c in self.lookup_names]
        self.head = Feat2VecHead(groups, prep.events, channels, prep.num_entities,
                                 {c: int(i.max()) + 1 for c, i in zip(self.lookup_names, lookup_ids)})
        ids = [group_value_ids(prep, g) for g in groups]
        self.sampler = NoiseSampler([i for i, _ in ids], [r for _, r in ids], prep.rows(TRAIN), self.head.params,
                                    alpha1, alpha2, self.target)
        with torch.no_grad():  # start each group's bias at log p(v | rest) of a model that knows nothing: −H_g
            self.head.bias.copy_(-self.sampler.entropy().float())
        self.events = prep.events.tf  # stays on the CPU; gathered rows move to the model's device
        empty = torch.zeros(0, dtype=torch.long)
        self.register_buffer("src", empty if prep.src is None else prep.src, persistent=False)
        self.register_buffer("dst", empty if prep.dst is None else prep.dst, persistent=False)
        self.register_buffer("lookup_ids", torch.stack(lookup_ids, dim=1) if lookup_ids else
                             torch.zeros(len(prep.split), 0, dtype=torch.long), persistent=False)

    def ids(self, rows: Tensor) -> RowIds:
        rows = rows.to(self.lookup_ids.device)
        src, dst = (None, None) if not len(self.src) else (self.src[rows], self.dst[rows])
        return RowIds(src, dst, self.lookup_ids[rows])

    def embed_rows(self, cells, rows: Tensor, tf: TensorFrame | None = None) -> Tensor:
        tf = (self.events[rows.cpu()] if tf is None else tf).to(next(self.parameters()).device)
        return self.head.embed(cells(tf), self.ids(rows))

    def forward(self, cells, rows: Tensor, tf: TensorFrame, generator: torch.Generator) -> Feat2VecStep:
        """NCE loss on the real rows ``rows`` (their cells ``tf``) and k sampled negatives each;
        ``cells`` maps a TensorFrame to cell embeddings [B, C, d]."""
        device = next(self.parameters()).device
        rows = rows.cpu()
        emb = self.embed_rows(cells, rows, tf)
        b, k = len(rows), self.negatives
        group, rep, neg_log_q = self.sampler.sample(b, k, generator)
        flat_rep = rep.flatten()
        neg = self.head.embed_each(group.flatten().to(device), cells(self.events[flat_rep].to(device)),
                                   self.ids(flat_rep))
        return feat2vec_step(emb, neg.view(b, k, -1), group.to(device),
                             self.sampler.true_log_q(rows, group).to(device).float(),
                             neg_log_q.to(device).float(), self.head.bias, k)

    def candidates(self, cells, group: int) -> tuple[Tensor, Tensor]:
        """Every rankable training value of ``group``: its value ids and embeddings [V, d]."""
        ids, rows = self.sampler.candidates[group]
        tf = self.events[rows].to(next(self.parameters()).device)
        return ids, self.head.embed_group(group, cells(tf), self.ids(rows))

    def true_candidate(self, rows: Tensor, group: int) -> Tensor:
        """[B] index among ``candidates(group)`` of each row's own value, -1 when it is no candidate."""
        ids, _ = self.sampler.candidates[group]
        where = torch.full((len(self.sampler.log_q[group]),), -1, dtype=torch.long)
        where[ids] = torch.arange(len(ids))
        return where[self.sampler.value_ids[rows.cpu(), group]]

    def rank(self, cells, rows: Tensor, group: int, candidates: tuple[Tensor, Tensor],
             tf: TensorFrame | None = None) -> Tensor:
        """Percentile ranks of the rows whose true value of ``group`` is a candidate (others are left out)."""
        rows = rows.cpu()
        truth = self.true_candidate(rows, group)
        keep = truth >= 0
        if tf is not None and not keep.all():
            tf = tf[keep.nonzero().squeeze(1).to(tf.device)]
        emb = self.embed_rows(cells, rows[keep], tf)
        return rank_group(emb, candidates[1], group, truth[keep].to(emb.device))
