"""Vectorised, time-aware k-hop neighbourhood sampling around seed edges of a directed multigraph.

PyG's neighbour loaders need pyg-lib or torch-sparse; this sampler needs only PyTorch. Each hop is
a handful of tensor operations over all frontier nodes at once (CSR offsets, ``searchsorted`` for
the time bound, Floyd's algorithm for sampling without replacement); Python loops run only over
hops and fan-out slots, never over nodes, edges or seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np
import torch
from torch import Tensor


def _expand_ranges(start: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate the ranges ``[start[i], start[i] + count[i])``: returns (owner ``i``, value)."""
    owner = torch.repeat_interleave(torch.arange(len(count)), count)
    first = torch.cumsum(count, 0) - count
    return owner, torch.arange(len(owner)) - first[owner] + start[owner]


def port_numbers(src: Tensor, dst: Tensor, seq: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Each event's out-port at its source and in-port at its target: the rank of the other endpoint
    among the node's distinct counterparties in that direction, by first contact. ``seq`` is each
    event's position in time order (ties in a fixed order), so a port depends only on the events
    up to that first contact.

    Events between one pair share a port, which lets a node tell parallel events from one
    counterparty apart from events of different counterparties (Egressy et al. 2024).
    """
    pair, group = torch.unique(src * num_nodes + dst, return_inverse=True)  # directed pairs
    first = torch.zeros(len(pair), dtype=torch.long).scatter_reduce(0, group, seq, "amin", include_self=False)

    def rank(owner: Tensor) -> Tensor:
        order = torch.sort(owner * max(len(seq), 1) + first).indices
        count = torch.bincount(owner, minlength=num_nodes)
        port = torch.empty_like(order)
        port[order] = torch.arange(len(order)) - (torch.cumsum(count, 0) - count)[owner[order]]
        return port[group]

    return rank(pair // num_nodes), rank(pair % num_nodes)


class IncidenceCSR:
    """Incidence lists of a directed multigraph, both directions, each node's list sorted by time.

    Node ``v`` owns entries ``rowptr[v]:rowptr[v + 1]`` of the flat arrays: the event ``eid`` (an
    original event row index), its ``other`` endpoint and ``dir`` (0: the event leaves ``v``,
    1: it enters ``v``). A self-loop is listed once, as an out-edge, so that sampling without
    replacement never returns it twice for one node. Entries of a node are ordered by time (ties
    in a fixed order); ``key = node * num_times + time rank`` is therefore globally sorted, and the
    prefix of a node's list at or before a time is found with one ``searchsorted``.

    ``edge_ids`` selects the events that exist in this graph (e.g. the training split); the others
    are never listed. ``pos_src[e]`` / ``pos_dst[e]`` give the entry of event ``e`` in its
    source's / target's list (-1 when ``e`` is not in the graph), which is how sampling skips
    excluded events without searching for them.

    ``port[e]`` holds event ``e``'s out-port at its source and in-port at its target
    (``port_numbers``), counted over this graph's events only (-1 for the others). The time order
    makes them causal: events added later never change an earlier event's ports. They cost about
    0.4 s per million events to build, 8 bytes per event (the lists take ~100) and one more read
    per sampled edge, little enough to keep them always rather than only for models that use them.
    """

    def __init__(
        self,
        src: Tensor,
        dst: Tensor,
        num_nodes: int,
        time: Tensor | None = None,
        edge_ids: Tensor | None = None,
    ) -> None:
        self.num_nodes = num_nodes
        self.src, self.dst = src.long(), dst.long()
        num_events = len(self.src)
        if num_nodes * max(num_nodes, num_events) >= 2**63:
            raise ValueError(f"{num_nodes} nodes and {num_events} events overflow int64 sort keys")
        ids = torch.arange(num_events) if edge_ids is None else torch.unique(edge_ids.long())
        s, d = self.src[ids], self.dst[ids]
        loop = s == d
        node = torch.cat([s, d[~loop]])
        self.unique_times = None if time is None else torch.unique(time.long()[ids])
        self.num_times = 1 if time is None else max(len(self.unique_times), 1)
        eid = torch.cat([ids, ids[~loop]])
        rank = 0 if time is None else torch.searchsorted(self.unique_times, time.long()[eid])
        key = node * self.num_times + rank
        order = torch.sort(key, stable=True).indices
        self.key = key[order]
        self.eid = eid[order]
        self.other = torch.cat([d, s[~loop]])[order]
        self.dir = (torch.arange(len(eid)) >= len(ids)).long()[order]
        # each event's position in time order, ties by event id (ids are sorted)
        by_time = torch.arange(len(ids)) if time is None else torch.sort(rank[: len(ids)], stable=True).indices
        seq = torch.empty_like(ids)
        seq[by_time] = torch.arange(len(ids))
        self.port = torch.full((num_events, 2), -1, dtype=torch.int32)
        self.port[ids] = torch.stack(port_numbers(s, d, seq, num_nodes), 1).int()
        degree = torch.bincount(node, minlength=num_nodes)
        self.rowptr = torch.cat([torch.zeros(1, dtype=torch.long), degree.cumsum(0)])

        entry = torch.empty_like(order)
        entry[order] = torch.arange(len(order))
        self.pos_src = torch.full((num_events,), -1, dtype=torch.long)
        self.pos_src[ids] = entry[: len(ids)]
        self.pos_dst = self.pos_src.clone()
        self.pos_dst[ids[~loop]] = entry[len(ids) :]

    @property
    def num_entries(self) -> int:
        return len(self.eid)

    def end(self, node: Tensor, until: Tensor | None = None) -> Tensor:
        """End of each node's list, or of its prefix of events at or before time ``until``."""
        if until is None:
            return self.rowptr[node + 1]
        return self.end_at_rank(node, self.time_rank(until))

    def time_rank(self, until: Tensor) -> Tensor:
        """Rank of the last graph time at or before each ``until`` (-1: before every event)."""
        if self.unique_times is None:
            raise ValueError("this graph was built without event times")
        return torch.searchsorted(self.unique_times, until.long(), right=True) - 1

    def end_at_rank(self, node: Tensor, rank: Tensor) -> Tensor:
        """``end`` with the time given by its ``time_rank`` (a tree's nodes share their seed's)."""
        query = node * self.num_times + rank
        if len(query) < 2048:
            return torch.searchsorted(self.key, query, right=True)
        # Many scattered searches into a large array run about twice as fast in sorted order, where
        # neighbouring searches walk the same cache lines (numpy's argsort: torch's sort is slower).
        order = torch.from_numpy(np.argsort(query.numpy()))
        end = torch.empty_like(query)
        end[order] = torch.searchsorted(self.key, query.index_select(0, order), right=True)
        return end

    @cached_property
    def partner_index(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Entries grouped by (node, other endpoint), each group in list order, for hiding the events
        of a pair without listing them: the sorted group keys ``node * num_nodes + other``, each
        group's first index, and per grouped entry the sorted keys ``group * W + position`` and
        ``group * W + position - rank in group`` (W = num_entries + 1). Built on first use (link
        prediction), 16 bytes per entry, so a pair that repeats thousands of times costs a few
        binary searches, not thousands of skipped entries."""
        node = self.key // self.num_times
        pair = node * self.num_nodes + self.other
        order = torch.sort(pair, stable=True).indices  # positions; stable keeps list (time) order in a group
        group_keys, group, counts = torch.unique_consecutive(pair[order], return_inverse=True, return_counts=True)
        start = torch.cumsum(counts, 0) - counts
        w = self.num_entries + 1
        rank = torch.arange(len(order)) - start[group]
        return group_keys, start, group * w + order, group * w + order - rank

    def partner_entries(self, node: Tensor, partner: Tensor, lo: Tensor,
                        hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Where ``node``'s entries with ``partner`` (none where partner < 0) at list positions
        [lo, hi) sit in ``partner_index``: (group, first, end)."""
        group_keys, _, by_position, _ = self.partner_index
        w = self.num_entries + 1
        key = node * self.num_nodes + partner.clamp(min=0)
        if not len(group_keys):  # a graph without events
            return torch.zeros_like(node), lo.clone(), lo.clone()
        group = torch.searchsorted(group_keys, key).clamp(max=len(group_keys) - 1)
        found = (partner >= 0) & (group_keys[group] == key)
        first = torch.searchsorted(by_position, group * w + lo)
        end = torch.where(found, torch.searchsorted(by_position, group * w + hi), first)
        return group, first, end

    def kept_position(self, j: Tensor, lo: Tensor, group: Tensor, first: Tensor, end: Tensor) -> Tensor:
        """List position of the ``j``-th entry at or after ``lo`` that is not a grouped entry in
        [first, end). A grouped entry i lies before it iff position_i - (i - first) <= lo + j, a
        quantity non-decreasing in i, so one binary search counts them."""
        _, start, _, by_adjusted = self.partner_index
        w = self.num_entries + 1
        below = torch.searchsorted(by_adjusted, group * w + j + lo - (first - start[group]), right=True)
        return lo + j + below.clamp(min=first, max=end) - first


@dataclass
class SampledSubgraph:
    """Disjoint per-seed sampling trees; nodes 0..B-1 are the seeds' sources, B..2B-1 their targets."""

    num_seeds: int  # B
    node_entity: Tensor  # [N] entity id of each tree node
    node_seed: Tensor  # [N] seed (0..B-1) each node belongs to
    edge_id: Tensor  # [E] original event row of each sampled edge
    edge_index: Tensor  # [2, E] local ids: row 0 child (newly reached), row 1 parent; messages child -> parent
    edge_dir: Tensor  # [E] 0: the event goes parent -> child, 1: child -> parent
    edge_hop: Tensor  # [E] 1-based hop
    edge_port: Tensor  # [E, 2] the event's port number at the parent, and at the child (IncidenceCSR.port)

    def to(self, device) -> "SampledSubgraph":
        tensors = [f.name for f in fields(self) if f.name != "num_seeds"]
        return replace(self, **{name: getattr(self, name).to(device) for name in tensors})

    @property
    def num_nodes(self) -> int:
        return len(self.node_entity)


# SplitMix64's constants as signed int64 (torch has no uint64 arithmetic; int64 products wrap).
_GOLDEN, _MIX1, _MIX2 = -7046029254386353131, -4658895280553007687, -7723592293110705685


def _shift_right(x: Tensor, n: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix64(x: Tensor) -> Tensor:
    """SplitMix64's finaliser, elementwise on int64: a well-mixed hash of each value."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def combine(a: Tensor | int, b: Tensor | int) -> Tensor:
    """A key for ``b`` within ``a`` (a tree node's child, a row within a run)."""
    return mix64(torch.as_tensor(a, dtype=torch.long) ^ mix64(torch.as_tensor(b, dtype=torch.long)))


def keyed_uniform(keys: Tensor, slots: int) -> Tensor:
    """[slots, len(keys)] uniforms in [0, 1) that are a function of each key alone: a node's draws
    do not depend on which other nodes share its batch (counter-based, as Philox is)."""
    x = mix64(keys.long()[None, :] + torch.arange(1, slots + 1, dtype=torch.long)[:, None] * _GOLDEN)
    return _shift_right(x, 11).double() * 2.0 ** -53


def _floyd(n: Tensor, k: Tensor, slots: int, generator: torch.Generator, keys: Tensor | None = None) -> Tensor:
    """Row ``i`` gets ``k[i]`` distinct values drawn uniformly from ``[0, n[i])``, padded with -1.

    Floyd's algorithm, vectorised over rows: slot ``s`` draws ``t`` in ``[0, j]`` with
    ``j = n - k + s`` and keeps ``t``, or ``j`` when ``t`` was already taken. Every ``k``-subset is
    equally likely, and the work is ``rows * slots**2`` whatever the degrees. With ``keys`` (one
    per row) the draws come from the keys (``keyed_uniform``), not from ``generator``.
    """
    out = torch.full((len(n), slots), -1, dtype=torch.long)
    u = (torch.rand(slots, len(n), generator=generator, dtype=torch.float64) if keys is None
         else keyed_uniform(keys, slots))
    # Slots no row fills stay -1: a key's one referenced row takes one round, not ``slots``.
    for s in range(min(int(k.max()), slots) if len(k) else 0):
        j = n - k + s
        t = torch.minimum((u[s] * (j + 1)).long(), j)
        taken = (out[:, :s] == t[:, None]).any(1)
        out[:, s] = torch.where(s < k, torch.where(taken, j, t), -1)
    return out


def _skip(f: Tensor, j: Tensor, skip_f: Tensor, skip_q: Tensor, width: int) -> Tensor:
    """Offset in row ``f``'s list of its ``j``-th entry that is not skipped.

    ``(skip_f, skip_q)`` are the skipped offsets, sorted by row then offset. The ``j``-th kept entry
    lies after exactly those skipped offsets ``q_i`` with ``q_i - i <= j`` (``i``: rank of ``q_i``
    in its row), a non-decreasing quantity, so one ``searchsorted`` counts them.
    """
    rank = torch.arange(len(skip_f)) - torch.searchsorted(skip_f, skip_f)
    key = skip_f * width + skip_q - rank
    before = torch.searchsorted(key, f * width + j, right=True) - torch.searchsorted(key, f * width)
    return j + before


def _cat(parts: list[Tensor]) -> Tensor:
    """``torch.cat`` that also accepts no parts (a sampler with no hops)."""
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


class NeighborSampler:
    """Samples a disjoint k-hop tree around both endpoints of each seed edge.

    Hop ``h`` takes, for every frontier node, ``fanouts[h-1]`` of its incident edges uniformly
    without replacement (all when fewer exist). In time-aware mode a tree holds only edges at or
    before its seed's time. Excluded edges are removed *before* sampling (exact: a node still gets
    ``min(fan-out, remaining degree)`` edges), by sampling ranks among the kept entries and
    mapping them past the excluded ones.
    """

    def __init__(self, graph: IncidenceCSR, fanouts: list[int], time_aware: bool = True) -> None:
        if any(f < 1 for f in fanouts):
            raise ValueError(f"fan-outs must be positive, got {fanouts}")
        self.graph, self.fanouts, self.time_aware = graph, list(fanouts), time_aware

    def sample(
        self,
        seed_src: Tensor,
        seed_dst: Tensor,
        seed_time: Tensor | None,
        generator: torch.Generator,
        exclude_edge: Tensor | None = None,
        exclude_pair: bool = False,
        pair: tuple[Tensor, Tensor] | None = None,
        keys: Tensor | None = None,
    ) -> SampledSubgraph:
        """Sample trees for seeds ``seed_src[i] -> seed_dst[i]`` at ``seed_time[i]``.

        ``exclude_edge[i]`` (an event id) never appears in seed ``i``'s tree; with ``exclude_pair``
        neither does any event between ``pair[0][i]`` and ``pair[1][i]`` (default: the seed's own
        endpoints) in either direction, and ``exclude_edge`` must then be one of those events.
        With ``keys`` (one int64 per seed) each tree's draws are a function of its seed's key and
        its own path alone, not of the batch (``keyed_uniform``): inference on new rows.
        """
        g = self.graph
        seed_src, seed_dst = seed_src.long(), seed_dst.long()
        num_seeds = len(seed_src)
        until_rank = g.time_rank(seed_time) if self.time_aware and seed_time is not None else None  # per seed
        pair_src, pair_dst = (seed_src, seed_dst) if pair is None else (pair[0].long(), pair[1].long())
        if exclude_pair and exclude_edge is not None:
            a, b = g.src[exclude_edge.long()], g.dst[exclude_edge.long()]
            if not (((a == pair_src) & (b == pair_dst)) | ((a == pair_dst) & (b == pair_src))).all():
                raise ValueError("with exclude_pair, each excluded edge must join its seed's pair")
            exclude_edge = None  # hidden with its pair
        skip_key, skip_pos = self._excluded_entries(exclude_edge)

        seeds = torch.arange(num_seeds)
        ent, seed = torch.cat([seed_src, seed_dst]), torch.cat([seeds, seeds])
        local = torch.arange(2 * num_seeds)
        node_key = None if keys is None else combine(torch.cat([keys, keys]), torch.arange(2).repeat_interleave(num_seeds))
        entities, owners, eids, children, parents, dirs, hops, ports = [ent], [seed], [], [], [], [], [], []
        num_nodes = 2 * num_seeds
        for hop, fanout in enumerate(self.fanouts, 1):
            lo = g.rowptr[ent]
            hi = g.end(ent) if until_rank is None else g.end_at_rank(ent, until_rank[seed])
            # entries of this frontier's lists that the seed excludes, as (frontier row, offset)
            start = torch.searchsorted(skip_key, seed * g.num_nodes + ent)
            count = torch.searchsorted(skip_key, seed * g.num_nodes + ent, right=True) - start
            skip_f, row = _expand_ranges(start, count)
            pos = skip_pos[row]
            inside = (pos >= lo[skip_f]) & (pos < hi[skip_f])
            skip_f, skip_q = skip_f[inside], (pos - lo[skip_f])[inside]

            n = hi - lo - torch.bincount(skip_f, minlength=len(ent))
            if exclude_pair:  # a frontier node that is one end of its seed's pair skips the other end
                pu, pv = pair_src[seed], pair_dst[seed]
                partner = torch.where(ent == pu, pv, torch.where(ent == pv, pu, -1))
                group, first, end = g.partner_entries(ent, partner, lo, hi)
                n = n - (end - first)
            slot = _floyd(n, n.clamp(max=fanout), fanout, generator, node_key)
            f, s = (slot >= 0).nonzero(as_tuple=True)
            if exclude_pair:
                pos = g.kept_position(slot[f, s], lo[f], group[f], first[f], end[f])
            else:
                pos = lo[f] + _skip(f, slot[f, s], skip_f, skip_q, g.num_entries + 1)

            child = torch.arange(num_nodes, num_nodes + len(pos))
            num_nodes += len(pos)
            # index_select, not ``x[pos]``: the same gather at 2.5-4x the speed into these large arrays
            eid = g.eid.index_select(0, pos)
            ent, seed, parent, local = g.other.index_select(0, pos), seed[f], local[f], child
            if node_key is not None:  # a child's key: its parent's and the event that reached it
                node_key = combine(node_key[f], eid)
            entities.append(ent)
            owners.append(seed)
            eids.append(eid)
            children.append(child)
            parents.append(parent)
            dirs.append(g.dir.index_select(0, pos))
            hops.append(torch.full((len(pos),), hop, dtype=torch.long))
            # (out-port, in-port) of each event, the parent's first: its out-port when the event leaves it
            ports.append(g.port.index_select(0, eid).gather(1, torch.stack([dirs[-1], 1 - dirs[-1]], 1)).long())

        return SampledSubgraph(
            num_seeds=num_seeds,
            node_entity=torch.cat(entities),
            node_seed=torch.cat(owners),
            edge_id=_cat(eids),
            edge_index=torch.stack([_cat(children), _cat(parents)]),
            edge_dir=_cat(dirs),
            edge_hop=_cat(hops),
            edge_port=torch.cat(ports) if ports else torch.zeros(0, 2, dtype=torch.long),
        )

    def _excluded_entries(self, exclude_edge: Tensor | None) -> tuple[Tensor, Tensor]:
        """Incidence entries each seed excludes (its ``exclude_edge``), as sorted
        ``seed * num_nodes + entity`` keys and entry positions.

        An excluded event is an entry of its source's and its target's list (one entry for a
        self-loop); events outside the graph have no entry and drop out.
        """
        g = self.graph
        if exclude_edge is None:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        seed, eid = torch.arange(len(exclude_edge)), exclude_edge.long()
        entity = torch.cat([g.src[eid], g.dst[eid]])
        pos = torch.cat([g.pos_src[eid], torch.where(g.src[eid] == g.dst[eid], -1, g.pos_dst[eid])])
        key = torch.cat([seed, seed]) * g.num_nodes + entity
        keep = pos >= 0
        key, pos = key[keep], pos[keep]
        order = torch.sort(pos).indices
        order = order[torch.sort(key[order], stable=True).indices]  # by key, then position
        return key[order], pos[order]
