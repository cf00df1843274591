"""Causal graph features of events and entities for gradient-boosted trees: the "graph features"
rung of the AML baseline ladder (IBM's Graph Feature Preprocessor gives LightGBM/XGBoost features
of the same kinds).

**Causality.** An event row ``u -> v`` at time ``t`` sees the events at or before ``t``: events that
share its timestamp count as before (their order within one timestamp means nothing), and the row
itself never counts. Appending later events therefore changes no earlier row's features.

**Per endpoint** (``src_*`` for ``u``, ``dst_*`` for ``v``), per direction (``out``, ``in``) and
window (the last day ``1d``, the last seven days ``7d``, ``all`` history): the event count and the
sum and mean of every numerical event column; ``fan_out``/``fan_in``, distinct counterparties to
date; ``recent_out_width``/``recent_in_width``, distinct counterparties among the account's
``RECENT_EVENTS`` (K) most recent events, a hub's scatter and gather widths now; ``since_prev`` and
``age``, seconds since its previous and its first event.

**Per edge**: ``parallel``, earlier ``u -> v`` events; ``cycle2``, earlier ``v -> u`` events;
``cycle3``, distinct accounts ``w`` with ``v -> w`` then (no earlier than that) ``w -> u``, money
that came back before ``u`` paid ``v``; ``scatter_gather``, distinct ``w`` with ``u -> w`` then
``w -> v``, paths parallel to the edge. The 2-path motifs search only the K most recent events of
each endpoint, which bounds their cost to 2(K + 1) sorted items per row on power-law graphs,
where a hub's whole history would make 2-path counts quadratic.

Numerical columns enter as encoded (after a declared transform such as log1p, before
standardisation): they exist for cached prepared data too, and unlike standardised values they
do not depend on the training split's statistics, which would break causality.

Everything is vectorised over rows with the time-sorted incidence lists of
``relssl.graph.sampler.IncidenceCSR``: prefix sums along each list and ``searchsorted`` for time
bounds; Python loops run over windows, directions and chunks of rows only.
"""
from __future__ import annotations

import time as clock
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch_frame
from torch import Tensor

from relssl.data.prepare import PreparedData
from relssl.errors import RelsslError
from relssl.graph.sampler import IncidenceCSR

WINDOWS = (("1d", 86_400), ("7d", 7 * 86_400), ("all", None))  # seconds
RECENT_EVENTS = 32  # K: the motif search and recent widths look at this many latest events per endpoint
DIRECTIONS = ("out", "in")
MOTIFS = ("cycle2", "cycle3", "scatter_gather")
ITEMS_PER_CHUNK = 1 << 21  # recent-event items held at once (rows per chunk x 2 endpoints x (K + 1))
NEVER, ALWAYS = torch.iinfo(torch.long).max, torch.iinfo(torch.long).min


class CausalGraph:
    """All events as time-sorted incidence lists, with what causal queries need: each entry's time,
    the direction(s) it counts in (a self-loop counts in both), prefix sums of counts and values
    along every list, and each counterparty's first contact.

    Without event times every event shares one time: all of them are visible to every row.
    """

    def __init__(self, src, dst, time, values, num_nodes: int, value_names: list[str] | None = None) -> None:
        self.src, self.dst = torch.as_tensor(src).long(), torch.as_tensor(dst).long()
        self.time = torch.zeros(len(self.src), dtype=torch.long) if time is None else torch.as_tensor(time).long()
        values = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(len(self.src), -1)
        self.value_names = value_names or [f"x{j}" for j in range(values.shape[1])]
        self.num_nodes = num_nodes
        g = self.csr = IncidenceCSR(self.src, self.dst, num_nodes, self.time)
        self.entry_time = g.unique_times[g.key % g.num_times]
        self.entry_node = g.key // g.num_times
        self.counts_in = {"out": g.dir == 0, "in": (g.dir == 1) | (g.other == self.entry_node)}
        self.list_start = g.rowptr[self.entry_node]
        entry_values = torch.nan_to_num(values[g.eid])  # a missing value adds nothing to sums
        self.entry_stats = {side: torch.cat([w.double()[:, None], entry_values * w[:, None]], 1)
                            for side, w in self.counts_in.items()}
        sums = list_prefix_sum(torch.cat([self.entry_stats[side] for side in DIRECTIONS], 1), self.list_start)
        self.list_sums = dict(zip(DIRECTIONS, sums.split(1 + values.shape[1], dim=1)))
        self.first_contact, self.next_contact, self.contacts_prefix = {}, {}, {}
        for side, counts in self.counts_in.items():
            self.first_contact[side], self.next_contact[side] = self._contacts(counts)
            firsts = self.first_contact[side].long()
            self.contacts_prefix[side] = torch.cat([torch.zeros(1, dtype=torch.long), firsts.cumsum(0)])
        pair = self.src * num_nodes + self.dst
        self.pair_keys, pair_id = torch.unique(pair, return_inverse=True)
        rank = torch.searchsorted(g.unique_times, self.time)
        self.pair_time_keys = torch.sort(pair_id * g.num_times + rank).values

    @classmethod
    def from_prepared(cls, prep: PreparedData) -> "CausalGraph":
        if not prep.has_graph:
            raise RelsslError("--mode gbdt-graph needs events that link entities (source and target columns)")
        numeric = prep.events.tf.feat_dict.get(torch_frame.numerical)
        names = prep.events.tf.col_names_dict.get(torch_frame.numerical, [])
        values = numeric.double().numpy() if numeric is not None else np.zeros((len(prep.src), 0))
        return cls(prep.src, prep.dst, prep.time, values, prep.num_entities, list(names))

    def _contacts(self, counts: Tensor) -> tuple[Tensor, Tensor]:
        """Per entry on one side: is it the node's first contact with its counterparty, and the
        position of the next entry with the same counterparty (NEVER if none)."""
        g = self.csr
        pos = counts.nonzero().squeeze(1)
        pair = self.entry_node[pos] * self.num_nodes + g.other[pos]
        order = torch.sort(pair, stable=True).indices  # by pair, then list position
        pair, pos = pair[order], pos[order]
        same_as_next = pair[1:] == pair[:-1]
        first = torch.zeros(g.num_entries, dtype=torch.bool)
        first[pos[torch.cat([torch.ones(min(len(pos), 1), dtype=torch.bool), ~same_as_next])]] = True
        following = torch.full((g.num_entries,), NEVER, dtype=torch.long)
        following[pos[:-1][same_as_next]] = pos[1:][same_as_next]
        return first, following

    def pair_count(self, a: Tensor, b: Tensor, t: Tensor) -> Tensor:
        """Events ``a -> b`` at or before ``t``."""
        pair = a * self.num_nodes + b
        at = torch.searchsorted(self.pair_keys, pair).clamp(max=max(len(self.pair_keys) - 1, 0))
        known = self.pair_keys[at] == pair
        rank = torch.searchsorted(self.csr.unique_times, t, right=True) - 1
        base = at * self.csr.num_times
        keys = self.pair_time_keys
        count = torch.searchsorted(keys, base + rank, right=True) - torch.searchsorted(keys, base)
        return torch.where(known, count.clamp(min=0), 0)

    def range_sums(self, side: str, lo: Tensor, end: Tensor, start: Tensor) -> Tensor:
        """Count and value sums of list entries ``[lo, end)`` counted on ``side``; ``start``: the list's first entry."""
        sums = self.list_sums[side]
        upper = torch.where((end > start)[:, None], sums[(end - 1).clamp(min=0)], 0)
        lower = torch.where((lo > start)[:, None], sums[(lo - 1).clamp(min=0)], 0)
        return upper - lower

    def endpoint(self, node: Tensor, t: Tensor, own: Tensor) -> dict[str, Tensor]:
        """Window aggregates, fan counts and recency of ``node`` at ``t``, leaving out its entry
        ``own`` (the row's own event; -1 for none). The own entry always lies in every window."""
        g = self.csr
        start, end = g.rowptr[node], g.end(node, t)
        has_own, own_at = own >= 0, own.clamp(min=0)
        window_start = {window: start if width is None else g.end(node, t - width) for window, width in WINDOWS}
        out = {}
        for side in DIRECTIONS:
            counted = has_own & self.counts_in[side][own_at]
            own_stats = self.entry_stats[side][own_at] * counted[:, None]
            for window, lo in window_start.items():
                stats = self.range_sums(side, lo, end, start) - own_stats
                count = stats[:, 0]
                stats = torch.where(count[:, None] > 0, stats, 0)  # no rounding residue from the own entry
                out[f"{side}_{window}_count"] = count
                for j, name in enumerate(self.value_names):
                    out[f"{side}_{window}_sum_{name}"] = stats[:, 1 + j]
                    out[f"{side}_{window}_mean_{name}"] = torch.where(count > 0, stats[:, 1 + j] / count, torch.nan)
            contacts = self.contacts_prefix[side][end] - self.contacts_prefix[side][start]
            only_contact = counted & self.first_contact[side][own_at] & (self.next_contact[side][own_at] >= end)
            out[f"fan_{side}"] = (contacts - only_contact.long()).double()
        last = end - 1
        last = torch.where(last == own, last - 1, last)
        first = torch.where(start == own, start + 1, start)
        seen = last >= start
        for name, entry in (("since_prev", last), ("age", first)):
            at = entry.clamp(0, max(g.num_entries - 1, 0))
            out[name] = torch.where(seen, (t - self.entry_time[at]).double(), torch.nan)
        return out


def list_prefix_sum(x: Tensor, list_start: Tensor) -> Tensor:
    """Row ``i`` holds the sum of rows ``list_start[i]..i`` (its incidence list up to it), so a
    range sum is two lookups.

    Hillis-Steele doubling, log2(longest list) rounds over the entries at least ``offset`` into
    their list: an entry's sum adds only earlier entries of its own list, in an order fixed by
    their offsets in that list, so events appended later (at the lists' ends) never change it, not
    even by rounding, as one global ``cumsum`` would once other lists grow."""
    depth = torch.arange(len(x)) - list_start
    x, active, offset = x.clone(), torch.arange(len(x)), 1
    while len(active := active[depth[active] >= offset]):
        x[active] = x[active] + x[active - offset]  # both read before the write: last round's sums
        offset *= 2
    return x


class RecentEvents:
    """The K most recent visible entries of each query's endpoints (its own entry left out),
    grouped by (query, counterparty)."""

    def __init__(self, graph: CausalGraph, endpoints: list[tuple[Tensor, Tensor]], t: Tensor, k: int) -> None:
        g = graph.csr
        self.num_queries = len(t)
        query, entry, which = [], [], []
        for index, (node, own) in enumerate(endpoints):
            newest = g.end(node, t)[:, None] - 1 - torch.arange(k + 1)  # k + 1: one may be the own entry
            keep = (newest >= g.rowptr[node][:, None]) & (newest != own[:, None])
            keep &= keep.cumsum(1) <= k
            q, slot = keep.nonzero(as_tuple=True)
            query.append(q)
            entry.append(newest[q, slot])
            which.append(torch.full_like(q, index))
        query, entry, which = torch.cat(query), torch.cat(entry), torch.cat(which)
        other = g.other[entry]
        key, order = torch.sort(query * graph.num_nodes + other)
        self.query, self.entry, self.endpoint = query[order], entry[order], which[order]
        new_group = torch.ones(len(key), dtype=torch.bool)
        new_group[1:] = key[1:] != key[:-1]
        self.group = new_group.cumsum(0) - 1
        self.group_query, self.group_other = self.query[new_group], other[order][new_group]
        self.num_groups = len(self.group_query)
        self.time = graph.entry_time[self.entry]
        self.counts_in = {side: graph.counts_in[side][self.entry] for side in DIRECTIONS}

    def _items(self, endpoint: int, side: str) -> Tensor:
        return (self.endpoint == endpoint) & self.counts_in[side]

    def width(self, endpoint: int, side: str) -> Tensor:
        """Distinct counterparties of the endpoint on this side, per query."""
        items = self._items(endpoint, side).long()
        present = torch.zeros(self.num_groups, dtype=torch.long).index_add_(0, self.group, items) > 0
        return torch.bincount(self.group_query[present], minlength=self.num_queries).double()

    def two_paths(self, first: tuple[int, str], second: tuple[int, str], exclude: list[Tensor]) -> Tensor:
        """Distinct middle accounts ``w`` per query with a ``first`` entry (endpoint, side) no
        later than a ``second`` one; ``w`` in ``exclude`` (per query) is not a middle."""
        earliest = self._reduce(self._items(*first), NEVER, "amin")
        latest = self._reduce(self._items(*second), ALWAYS, "amax")
        middle = earliest <= latest
        for node in exclude:
            middle &= self.group_other != node[self.group_query]
        return torch.bincount(self.group_query[middle], minlength=self.num_queries).double()

    def _reduce(self, items: Tensor, empty: int, how: str) -> Tensor:
        times = torch.where(items, self.time, empty)
        return torch.full((self.num_groups,), empty, dtype=torch.long).scatter_reduce_(0, self.group, times, how)


def edge_features(graph: CausalGraph, rows: Tensor | None = None, k: int = RECENT_EVENTS) -> pd.DataFrame:
    """Causal graph features of event ``rows`` (default: all), one DataFrame row each, in order."""
    g = graph.csr
    rows = torch.arange(len(graph.src)) if rows is None else torch.as_tensor(rows).long()
    table, done = None, 0
    for chunk in rows.split(max(ITEMS_PER_CHUNK // (2 * (k + 1)), 1)):
        u, v, t = graph.src[chunk], graph.dst[chunk], graph.time[chunk]
        own_u, own_v = g.pos_src[chunk], g.pos_dst[chunk]
        columns = {}
        for prefix, node, own in (("src", u, own_u), ("dst", v, own_v)):
            columns.update({f"{prefix}_{name}": x for name, x in graph.endpoint(node, t, own).items()})
        recent = RecentEvents(graph, [(u, own_u), (v, own_v)], t, k)
        for index, prefix in enumerate(("src", "dst")):
            for side in DIRECTIONS:
                columns[f"{prefix}_recent_{side}_width"] = recent.width(index, side)
        columns["parallel"] = (graph.pair_count(u, v, t) - 1).double()
        columns["cycle2"] = (graph.pair_count(v, u, t) - (u == v).long()).double()
        columns["cycle3"] = recent.two_paths((1, "out"), (0, "in"), [u, v])
        columns["scatter_gather"] = recent.two_paths((0, "out"), (1, "in"), [u, v])
        if table is None:  # one block, filled chunk by chunk: no copy when the frame is made
            table = np.empty((len(rows), len(columns)))
        table[done:done + len(chunk)] = torch.stack(list(columns.values()), 1).numpy()
        done += len(chunk)
    return pd.DataFrame(table, columns=list(columns), copy=False)


def node_features(graph: CausalGraph, k: int = RECENT_EVENTS) -> pd.DataFrame:
    """Per entity, the endpoint features at the end of the visible history (all events; node tasks
    see the whole graph), plus over its outgoing and incoming events the sums of their motif counts."""
    nodes = torch.arange(graph.num_nodes)
    end = torch.full_like(nodes, int(graph.time.max()) if len(graph.time) else 0)
    none = torch.full_like(nodes, -1)
    columns = graph.endpoint(nodes, end, none)
    recent = RecentEvents(graph, [(nodes, none)], end, k)
    for side in DIRECTIONS:
        columns[f"recent_{side}_width"] = recent.width(0, side)
    out = pd.DataFrame({name: x.numpy() for name, x in columns.items()})
    motifs = edge_features(graph, k=k)[list(MOTIFS)].to_numpy()
    for side, node in (("out", graph.src), ("in", graph.dst)):
        for j, name in enumerate(MOTIFS):
            out[f"{side}_{name}_sum"] = np.bincount(node.numpy(), weights=motifs[:, j], minlength=graph.num_nodes)
    return out


@contextmanager
def one_thread():
    """Run torch on one thread for a while. The features are many short tensor operations: on a
    shared 2-core machine a second thread made them 5-10x slower (100k events: 6,000 against
    35,000-64,000 rows/s), its barrier waits costing more than it computes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bench_graph_features(prep: PreparedData, k: int = RECENT_EVENTS) -> dict:
    """Build the graph and compute every event's features once, on one thread as gbdt-graph does:
    seconds and rows/s."""
    with one_thread():
        start = clock.perf_counter()
        graph = CausalGraph.from_prepared(prep)
        built = clock.perf_counter()
        features = edge_features(graph, k=k)
        done = clock.perf_counter()
    return {"rows": len(features), "features": features.shape[1], "k": k, "threads": 1, "build_s": built - start,
            "features_s": done - built, "rows_per_s": len(features) / (done - start)}
