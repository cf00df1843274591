"""Time-aware neighbourhood trees over a relational database: rows are nodes, every foreign key is
a relation in both directions (a row to the row it references; a row to the rows referencing it).

Each relation is a CSR over its source table's rows, each list sorted by the neighbour's time, so
the part of a list at or before a time is one ``searchsorted`` away (as in relssl.graph.sampler's
IncidenceCSR); rows of static tables (no time) are always visible. A tree grows from a seed row:
hop h takes, for every frontier node and every relation leaving its table, ``fanouts[h-1]`` of
the visible neighbours uniformly without replacement (Floyd's algorithm, vectorised over nodes),
never the seed row itself. Python loops run over hops and relations only.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from relssl.graph.sampler import _floyd, combine


@dataclass
class Relation:
    name: str  # "surveys.species_id" (a row to the row it references) or "surveys.species_id^-1"
    src: int  # table index of the node the relation leaves
    dst: int  # table index of the neighbour
    rowptr: Tensor  # [rows of src + 1]
    neighbor: Tensor  # [entries] neighbour row ids, each list sorted by the neighbour's time
    key: Tensor | None  # [entries] src row * num_times + the neighbour's time rank; None: dst is static
    # Reverse relations: where each dst-table row sits in the list of the row it references (-1: in none).
    position: Tensor | None = None


@dataclass
class RelationTree:
    """Disjoint per-seed trees; nodes 0..B-1 are the seed rows."""

    num_seeds: int
    node_table: Tensor  # [N] table index of each node
    node_row: Tensor  # [N] row id within its table
    node_seed: Tensor  # [N] seed (0..B-1) each node belongs to
    edge_index: Tensor  # [2, E] local ids: row 0 child (newly reached), row 1 parent
    edge_relation: Tensor  # [E] index into RelationGraph.relations
    edge_hop: Tensor  # [E] 1-based hop

    def to(self, device) -> "RelationTree":
        names = [f.name for f in fields(self) if f.name != "num_seeds"]
        return replace(self, **{name: getattr(self, name).to(device) for name in names})

    @property
    def num_nodes(self) -> int:
        return len(self.node_row)


class RelationGraph:
    """Every foreign key of a database, both directions, as time-sorted CSR relations.

    ``links[(table, name)] = (target table, [rows of table] referenced row or -1)``; ``times[t]``
    int64 seconds per row (None: static); ``visible[t]`` the rows that may appear in a tree (the
    others are never listed; default all), e.g. the rows of the splits a tree may see.
    """

    def __init__(self, tables: list[str], num_rows: list[int], times: list[Tensor | None],
                 links: dict[tuple[int, str], tuple[int, Tensor]], visible: list[Tensor | None] | None = None):
        self.tables, self.num_rows = tables, num_rows
        known = [t.long() for t in times if t is not None]
        self.unique_times = torch.unique(torch.cat(known)) if known else torch.zeros(0, dtype=torch.long)
        self.num_times = max(len(self.unique_times), 1)
        self.rank = [None if t is None else torch.searchsorted(self.unique_times, t.long()) for t in times]
        visible = visible or [None] * len(tables)
        self.relations: list[Relation] = []
        for (child, name), (parent, target) in links.items():
            target = target.long()
            rows = torch.arange(num_rows[child])
            ok = target >= 0
            if visible[child] is not None:
                ok &= visible[child]
            if visible[parent] is not None:
                ok &= visible[parent][target.clamp(min=0)]
            src, dst = rows[ok], target[ok]
            label = f"{tables[child]}.{name}"
            self.relations.append(self._relation(label, child, parent, src, dst))
            self.relations.append(self._relation(f"{label}^-1", parent, child, dst, src, reverse=True))

    def _relation(self, name: str, src_table: int, dst_table: int, src: Tensor, dst: Tensor,
                  reverse: bool = False) -> Relation:
        rank = self.rank[dst_table]
        time_rank = torch.zeros_like(dst) if rank is None else rank[dst]
        order = torch.sort(src * self.num_times + time_rank, stable=True).indices  # ties: row order
        src, dst = src[order], dst[order]
        count = torch.bincount(src, minlength=self.num_rows[src_table])
        rowptr = torch.cat([torch.zeros(1, dtype=torch.long), count.cumsum(0)])
        key = None if rank is None else src * self.num_times + rank[dst]
        position = None
        if reverse:  # dst rows here are the referencing rows: each sits in exactly one list
            position = torch.full((self.num_rows[dst_table],), -1, dtype=torch.long)
            position[dst] = torch.arange(len(dst))
        return Relation(name, src_table, dst_table, rowptr, dst, key, position)

    def time_rank(self, time: Tensor) -> Tensor:
        """Each time's rank among the database's distinct times: the last at or before it."""
        return torch.searchsorted(self.unique_times, time.long(), right=True) - 1

    def end(self, rel: Relation, node: Tensor, until: Tensor | None) -> Tensor:
        """End of each node's list, or of its part at or before the time of rank ``until`` (dst rows
        with a time)."""
        if until is None or rel.key is None:
            return rel.rowptr[node + 1]
        return torch.searchsorted(rel.key, node * self.num_times + until, right=True)

    def _referenced(self, rel: Relation, node: Tensor, until: Tensor | None) -> tuple[Tensor, Tensor]:
        """A forward relation (each list holds at most one row): the nodes whose referenced row is
        visible at or before the time of rank ``until``, and that row."""
        lo, hi = rel.rowptr[node], rel.rowptr[node + 1]
        f = (hi > lo).nonzero().squeeze(1)
        neighbor = rel.neighbor[lo[f]]
        if until is not None and rel.key is not None:
            keep = self.rank[rel.dst][neighbor] <= until[f]
            f, neighbor = f[keep], neighbor[keep]
        return f, neighbor

    def _draw(self, rel: Relation, node: Tensor, until: Tensor | None, owner: Tensor, fanout: int,
              generator: torch.Generator, hidden: Tensor | None, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Up to ``fanout`` rows of each node's list at or before the time of rank ``until``,
        uniformly without replacement (Floyd), never the ``hidden`` row (each node's: its entry,
        if any, is skipped)."""
        lo = rel.rowptr[node]
        hi = self.end(rel, node, until)
        skip = torch.full_like(lo, -1)
        if hidden is not None:
            pos = rel.position[hidden]
            skip = torch.where((pos >= lo) & (pos < hi), pos - lo, -1)
        n = hi - lo - (skip >= 0).long()
        slot = _floyd(n, n.clamp(max=fanout), fanout, generator, keys)
        f, s = (slot >= 0).nonzero(as_tuple=True)
        offset = slot[f, s]
        offset = offset + ((skip[f] >= 0) & (offset >= skip[f])).long()
        return f, rel.neighbor[lo[f] + offset]

    def sample(self, seed_table: int, seed_rows: Tensor, seed_time: Tensor | None, fanouts: list[int],
               generator: torch.Generator, hide: tuple[int, Tensor] | None = None,
               drop_at_root: tuple[int, ...] = (), keys: Tensor | None = None) -> RelationTree:
        """Trees around the rows ``seed_rows`` of ``seed_table``, cut off at ``seed_time`` (None: no cut).
        ``hide`` (table, [B] rows): the row each tree must not hold (default: its seed row);
        ``drop_at_root``: relations the roots do not follow (the link a task predicts); ``keys``
        (one int64 per seed): draws from each tree's own path, not the batch (relssl.graph.sampler.keyed_uniform)."""
        seed_rows = seed_rows.long()
        b = len(seed_rows)
        hidden_table, hidden = (seed_table, seed_rows) if hide is None else (hide[0], hide[1].long())
        table, row, seed = torch.full((b,), seed_table), seed_rows, torch.arange(b)
        local = torch.arange(b)
        node_key = keys
        tables, rows, seeds, children, parents, relations, hops = [table], [row], [seed], [], [], [], []
        num_nodes = b
        seed_rank = None if seed_time is None else self.time_rank(seed_time)  # once, not per relation
        for hop, fanout in enumerate(fanouts, 1):
            next_table, next_row, next_seed, next_local, next_key = [], [], [], [], []
            for r, rel in enumerate(self.relations):
                at = (table == rel.src).nonzero().squeeze(1)
                if not len(at) or (hop == 1 and r in drop_at_root):
                    continue
                node, owner = row[at], seed[at]
                until = None if seed_rank is None else seed_rank[owner]
                if rel.position is None:  # a key: the one row it references, if visible; nothing to draw
                    f, neighbor = self._referenced(rel, node, until)
                else:
                    f, neighbor = self._draw(rel, node, until, owner, fanout, generator,
                                             hidden[owner] if rel.dst == hidden_table else None,
                                             None if node_key is None else combine(node_key[at], r))
                if rel.dst == hidden_table and rel.position is None:  # a row referencing the hidden row
                    keep = neighbor != hidden[owner[f]]
                    f, neighbor = f[keep], neighbor[keep]
                child = torch.arange(num_nodes, num_nodes + len(f))
                num_nodes += len(f)
                next_table.append(torch.full((len(f),), rel.dst))
                next_row.append(neighbor)
                next_seed.append(owner[f])
                next_local.append(child)
                if node_key is not None:  # a child's key: its parent's, the relation and the row reached
                    next_key.append(combine(node_key[at][f], combine(r, neighbor)))
                children.append(child)
                parents.append(local[at][f])
                relations.append(torch.full((len(f),), r))
                hops.append(torch.full((len(f),), hop))
            if not next_row:
                break
            table, row, seed, local = (torch.cat(x) for x in (next_table, next_row, next_seed, next_local))
            node_key = None if node_key is None else torch.cat(next_key)
            tables.append(table)
            rows.append(row)
            seeds.append(seed)

        def cat(parts: list[Tensor]) -> Tensor:
            return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

        return RelationTree(num_seeds=b, node_table=cat(tables), node_row=cat(rows), node_seed=cat(seeds),
                            edge_index=torch.stack([cat(children), cat(parents)]), edge_relation=cat(relations),
                            edge_hop=cat(hops))
