"""Neighbour sampler: every sampled tree is checked edge by edge against a brute-force reference."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from relssl.graph.sampler import IncidenceCSR, NeighborSampler, SampledSubgraph, keyed_uniform


def power_law_graph(num_nodes: int = 150, num_events: int = 3000, seed: int = 0):
    """Zipf-distributed endpoints (hubs, many parallel edges), extra self-loops, tied times."""
    gen = torch.Generator().manual_seed(seed)
    weight = 1.0 / torch.arange(1, num_nodes + 1, dtype=torch.float64) ** 1.2
    src = torch.multinomial(weight, num_events, replacement=True, generator=gen)
    dst = torch.multinomial(weight, num_events, replacement=True, generator=gen)
    dst[:100] = src[:100]
    time = torch.randint(0, 400, (num_events,), generator=gen)
    return src, dst, time


def check_tree(
    sub: SampledSubgraph,
    src: torch.Tensor,
    dst: torch.Tensor,
    time: torch.Tensor,
    fanouts: list[int],
    seed_src: torch.Tensor,
    seed_dst: torch.Tensor,
    until: torch.Tensor | None = None,
    in_graph: torch.Tensor | None = None,
    excluded: list[set[int]] | None = None,
) -> None:
    """Compare each frontier node's sample with the brute-force set of edges it may take.

    A node may take the events touching its entity that are in the graph, at or before its seed's
    time and not excluded for its seed; it must take ``min(fan-out, that many)`` distinct ones.
    """
    B = sub.num_seeds
    src_l, dst_l, time_l = src.tolist(), dst.tolist(), time.tolist()
    in_graph_l = [True] * len(src_l) if in_graph is None else in_graph.tolist()
    incident: dict[int, list[int]] = {}
    for e, (s, d) in enumerate(zip(src_l, dst_l)):
        if in_graph_l[e]:
            for v in {s, d}:
                incident.setdefault(v, []).append(e)

    ent, owner = sub.node_entity.tolist(), sub.node_seed.tolist()
    assert ent[:B] == seed_src.tolist() and ent[B : 2 * B] == seed_dst.tolist()
    assert owner[: 2 * B] == list(range(B)) * 2
    child, parent = sub.edge_index.tolist()
    # edge j reaches node 2B + j and edges come hop by hop: the nodes up to a depth are a prefix (relssl.nn.gnn.TreeGNN)
    assert child == list(range(2 * B, sub.num_nodes)), "each non-seed node is reached once, in edge order"
    assert (sub.edge_hop[1:] >= sub.edge_hop[:-1]).all()
    depth = [0] * sub.num_nodes
    taken: dict[int, list[int]] = {}
    for i, (c, p) in enumerate(zip(child, parent)):
        assert p < c and owner[c] == owner[p]
        depth[c] = depth[p] + 1
        assert sub.edge_hop[i] == depth[c]
        e = int(sub.edge_id[i])
        assert {src_l[e], dst_l[e]} == {ent[p], ent[c]}, "edge is incident to its parent and child"
        assert int(sub.edge_dir[i]) == (0 if src_l[e] == ent[p] else 1)
        taken.setdefault(p, []).append(e)

    for p in range(sub.num_nodes):
        if depth[p] >= len(fanouts):
            assert p not in taken
            continue
        s = owner[p]
        allowed = {
            e
            for e in incident.get(ent[p], [])
            if (until is None or time_l[e] <= int(until[s])) and (excluded is None or e not in excluded[s])
        }
        got = taken.get(p, [])
        assert len(set(got)) == len(got), "sampled without replacement"
        assert set(got) <= allowed
        assert len(got) == min(fanouts[depth[p]], len(allowed))


@pytest.fixture(scope="module")
def graph_data():
    return power_law_graph()


def seeds_from(events: torch.Tensor, src, dst, time, num: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    idx = events[torch.randint(0, len(events), (num,), generator=gen)]
    return idx, src[idx], dst[idx], time[idx]


@pytest.mark.parametrize("time_aware", [True, False])
@pytest.mark.parametrize("use_subset", [False, True])
@pytest.mark.parametrize("exclusion", [None, "edge", "pair"])
def test_samples_match_brute_force(graph_data, time_aware, use_subset, exclusion):
    src, dst, time = graph_data
    n = int(torch.maximum(src, dst).max()) + 1
    subset = torch.randperm(len(src), generator=torch.Generator().manual_seed(3))[: len(src) // 2]
    g = IncidenceCSR(src, dst, n, time, edge_ids=subset if use_subset else None)
    events = subset if use_subset else torch.arange(len(src))
    idx, s, d, t = seeds_from(events, src, dst, time, num=48)
    fanouts = [4, 3]
    sub = NeighborSampler(g, fanouts, time_aware=time_aware).sample(
        s, d, t, torch.Generator().manual_seed(0),
        exclude_edge=None if exclusion is None else idx, exclude_pair=exclusion == "pair",
    )
    in_graph = torch.zeros(len(src), dtype=torch.bool)
    in_graph[events] = True
    excluded = None
    if exclusion is not None:
        excluded = [
            {int(i)} | ({e for e in range(len(src)) if {int(src[e]), int(dst[e])} == {int(a), int(b)}} if exclusion == "pair" else set())
            for i, a, b in zip(idx, s, d)
        ]
    check_tree(sub, src, dst, time, fanouts, s, d, t if time_aware else None, in_graph, excluded)
    assert sub.edge_id.numel() > 300
    if use_subset:
        assert in_graph[sub.edge_id].all()


def test_time_aware_never_samples_the_future_and_plain_mode_does(graph_data):
    src, dst, time = graph_data
    g = IncidenceCSR(src, dst, int(torch.maximum(src, dst).max()) + 1, time)
    idx, s, d, t = seeds_from(torch.arange(len(src)), src, dst, time, num=1000)
    for time_aware in (True, False):
        sub = NeighborSampler(g, [5, 5], time_aware).sample(s, d, t, torch.Generator().manual_seed(0))
        later = time[sub.edge_id] > t[sub.node_seed[sub.edge_index[1]]]
        assert later.any() != time_aware
    sub = NeighborSampler(g, [5, 5], time_aware=True).sample(s, d, None, torch.Generator().manual_seed(0))
    assert (time[sub.edge_id] > t[sub.node_seed[sub.edge_index[1]]]).any(), "no seed time: no bound"


def test_exclusions_hold_for_every_seed(graph_data):
    src, dst, time = graph_data
    g = IncidenceCSR(src, dst, int(torch.maximum(src, dst).max()) + 1, time)
    idx, s, d, t = seeds_from(torch.arange(len(src)), src, dst, time, num=500)
    sampler = NeighborSampler(g, [10, 5], time_aware=False)
    gen = torch.Generator().manual_seed(0)
    sub = sampler.sample(s, d, t, gen, exclude_edge=idx)
    assert not (sub.edge_id == idx[sub.node_seed[sub.edge_index[1]]]).any()
    sub = sampler.sample(s, d, t, gen, exclude_edge=idx, exclude_pair=True)
    seed = sub.node_seed[sub.edge_index[1]]
    a, b = src[sub.edge_id], dst[sub.edge_id]
    same_pair = ((a == s[seed]) & (b == d[seed])) | ((a == d[seed]) & (b == s[seed]))
    assert not same_pair.any()


def test_csr_lists_every_edge_once_per_endpoint_sorted_by_time(graph_data):
    src, dst, time = graph_data
    n = int(torch.maximum(src, dst).max()) + 1
    g = IncidenceCSR(src, dst, n, time)
    loops = int((src == dst).sum())
    assert g.num_entries == 2 * len(src) - loops
    owner = torch.repeat_interleave(torch.arange(n), g.rowptr[1:] - g.rowptr[:-1])
    assert Counter(g.eid.tolist()) == Counter(list(range(len(src))) * 2) - Counter((src == dst).nonzero().squeeze(1).tolist())
    out = g.dir == 0
    assert torch.equal(src[g.eid][out], owner[out]) and torch.equal(dst[g.eid][out], g.other[out])
    assert torch.equal(dst[g.eid][~out], owner[~out]) and torch.equal(src[g.eid][~out], g.other[~out])
    t = time[g.eid]
    assert ((owner[1:] > owner[:-1]) | (t[1:] >= t[:-1])).all()
    assert torch.equal(g.eid[g.pos_src], torch.arange(len(src)))
    assert torch.equal(g.eid[g.pos_dst], torch.arange(len(src)))


def test_same_generator_seed_same_sample(graph_data):
    src, dst, time = graph_data
    g = IncidenceCSR(src, dst, int(torch.maximum(src, dst).max()) + 1, time)
    idx, s, d, t = seeds_from(torch.arange(len(src)), src, dst, time, num=64)
    sampler = NeighborSampler(g, [10, 5])
    a, b, c = (sampler.sample(s, d, t, torch.Generator().manual_seed(k), exclude_edge=idx) for k in (7, 7, 8))
    for field in ("node_entity", "node_seed", "edge_id", "edge_index", "edge_dir", "edge_hop"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.edge_id, c.edge_id)


def tiny_graph():
    #        e0     e1     e2     e3     e4     e5     e6
    src = torch.tensor([0, 1, 2, 1, 0, 3, 2])
    dst = torch.tensor([1, 2, 0, 1, 1, 0, 3])
    time = torch.tensor([1, 2, 3, 4, 5, 9, 0])
    return src, dst, time


def tree_rows(sub: SampledSubgraph) -> list[tuple[int, ...]]:
    """(hop, event that reached the parent or -1/-2 for the seed's source/target, parent entity, event, child entity, dir)."""
    via = {c: e for c, e in zip(sub.edge_index[0].tolist(), sub.edge_id.tolist())}
    via.update({0: -1, 1: -2})
    return sorted(
        (h, via[p], int(sub.node_entity[p]), e, int(sub.node_entity[c]), d)
        for (c, p), e, d, h in zip(sub.edge_index.t().tolist(), sub.edge_id.tolist(), sub.edge_dir.tolist(), sub.edge_hop.tolist())
    )


def test_tiny_graph_hand_checked():
    src, dst, time = tiny_graph()
    sampler = NeighborSampler(IncidenceCSR(src, dst, 4, time), [10, 10])
    seed = dict(seed_src=src[4:5], seed_dst=dst[4:5], seed_time=time[4:5], exclude_edge=torch.tensor([4]))
    # seed e4 = 0 -> 1 at t=5: e4 itself and e5 (t=9) are out of reach
    sub = sampler.sample(**seed, generator=torch.Generator().manual_seed(0))
    assert tree_rows(sub) == sorted([
        (1, -1, 0, 0, 1, 0), (1, -1, 0, 2, 2, 1),
        (1, -2, 1, 0, 0, 1), (1, -2, 1, 1, 2, 0), (1, -2, 1, 3, 1, 0),
        (2, 0, 1, 0, 0, 1), (2, 0, 1, 1, 2, 0), (2, 0, 1, 3, 1, 0),
        (2, 2, 2, 1, 1, 1), (2, 2, 2, 2, 0, 0), (2, 2, 2, 6, 3, 0),
        (2, 0, 0, 0, 1, 0), (2, 0, 0, 2, 2, 1),
        (2, 1, 2, 1, 1, 1), (2, 1, 2, 2, 0, 0), (2, 1, 2, 6, 3, 0),
        (2, 3, 1, 0, 0, 1), (2, 3, 1, 1, 2, 0), (2, 3, 1, 3, 1, 0),
    ])
    assert sub.node_seed.eq(0).all() and sub.num_nodes == 2 + 19
    # hiding the pair also hides e0, the other 0 -> 1 event
    sub = sampler.sample(**seed, generator=torch.Generator().manual_seed(0), exclude_pair=True)
    assert tree_rows(sub) == sorted([
        (1, -1, 0, 2, 2, 1),
        (1, -2, 1, 1, 2, 0), (1, -2, 1, 3, 1, 0),
        (2, 2, 2, 1, 1, 1), (2, 2, 2, 2, 0, 0), (2, 2, 2, 6, 3, 0),
        (2, 1, 2, 1, 1, 1), (2, 1, 2, 2, 0, 0), (2, 1, 2, 6, 3, 0),
        (2, 3, 1, 1, 2, 0), (2, 3, 1, 3, 1, 0),
    ])


def test_seed_before_all_events_gets_an_empty_tree():
    src, dst, time = tiny_graph()
    sub = NeighborSampler(IncidenceCSR(src, dst, 4, time), [3, 3]).sample(
        src[:2], dst[:2], torch.tensor([-1, -1]), torch.Generator().manual_seed(0)
    )
    assert sub.edge_id.numel() == 0 and sub.num_nodes == 4 and sub.edge_index.shape == (2, 0)


@pytest.mark.parametrize("exclude, until", [(False, 100), (True, 100), (True, 11)])
def test_uniform_over_a_star(exclude, until):
    """A centre with 20 edges at times 0..19, fan-out 5: each allowed edge is taken equally often."""
    leaves = torch.arange(1, 21)
    src, dst, time = torch.zeros(20, dtype=torch.long), leaves, torch.arange(20)
    num_seeds, fanout = 3000, 5
    sampler = NeighborSampler(IncidenceCSR(src, dst, 21, time), [fanout])
    sub = sampler.sample(
        torch.zeros(num_seeds, dtype=torch.long), torch.ones(num_seeds, dtype=torch.long),
        torch.full((num_seeds,), until), torch.Generator().manual_seed(0),
        exclude_edge=torch.zeros(num_seeds, dtype=torch.long) if exclude else None,
    )
    from_centre = sub.edge_index[1] < num_seeds
    allowed = [e for e in range(20) if e <= until and not (exclude and e == 0)]
    counts = torch.bincount(sub.edge_id[from_centre], minlength=20).double()
    assert counts[[e for e in range(20) if e not in allowed]].sum() == 0
    expected = num_seeds * fanout / len(allowed)
    chi2 = ((counts[allowed] - expected) ** 2 / expected).sum().item()
    assert chi2 < 45.0  # about the 0.1 % tail of chi-square with 19 degrees of freedom


def test_a_repeated_pair_is_hidden_exactly_and_the_rest_stays_uniform():
    """Node 0 has 3,000 events with node 1 and one each with nodes 2..21: hiding the pair (0, 1)
    leaves the 20 others, each taken equally often, for the seed and for a pseudo-seed whose
    hidden pair is given apart from its roots."""
    partner = torch.cat([torch.ones(3000, dtype=torch.long), torch.arange(2, 22)])
    order = torch.randperm(len(partner), generator=torch.Generator().manual_seed(0))  # interleaved in time
    src, dst = torch.zeros(len(partner), dtype=torch.long), partner[order]
    time = torch.arange(len(partner))
    sampler = NeighborSampler(IncidenceCSR(src, dst, 22, time), [5])
    num_seeds = 2000
    zeros, ones = torch.zeros(num_seeds, dtype=torch.long), torch.ones(num_seeds, dtype=torch.long)
    seed_event = (dst == 1).nonzero()[-1].repeat(num_seeds)
    for roots in ((zeros, ones), (zeros, torch.full((num_seeds,), 5))):
        sub = sampler.sample(*roots, None, torch.Generator().manual_seed(1), exclude_edge=seed_event,
                             exclude_pair=True, pair=(zeros, ones))
        from_zero = sub.edge_index[1] < num_seeds
        assert (dst[sub.edge_id] != 1).all() and from_zero.sum() == num_seeds * 5
        counts = torch.bincount(dst[sub.edge_id[from_zero]], minlength=22)[2:].double()
        expected = num_seeds * 5 / 20
        assert ((counts - expected) ** 2 / expected).sum().item() < 45.0
    with pytest.raises(ValueError, match="must join its seed's pair"):
        sampler.sample(zeros, ones, None, torch.Generator(), exclude_edge=(dst == 3).nonzero()[0].repeat(num_seeds),
                       exclude_pair=True)


def test_keyed_uniforms_depend_on_the_key_alone():
    keys = torch.arange(20_000) * 7919
    u = keyed_uniform(keys, 3)
    assert u.shape == (3, 20_000) and 0 <= float(u.min()) and float(u.max()) < 1
    assert torch.equal(keyed_uniform(keys[[5, 3]], 3), u[:, [5, 3]])  # a column is its key's alone
    assert torch.equal(keyed_uniform(keys[:10], 5)[:3], u[:, :10])  # more slots extend, never change, the draws
    assert len(torch.unique(u[:, 0])) == 3 and len(torch.unique(u[0])) == 20_000
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(torch.corrcoef(u[:2])[0, 1])) < 0.03


def per_seed_trees(sub: SampledSubgraph) -> list[list[tuple[int, int]]]:
    """Each seed's tree as its (hop, event) list, in sampling order."""
    seed_of_edge = sub.node_seed[sub.edge_index[0]]
    return [list(zip(sub.edge_hop[seed_of_edge == s].tolist(), sub.edge_id[seed_of_edge == s].tolist()))
            for s in range(sub.num_seeds)]


def test_keyed_trees_do_not_depend_on_their_batch(graph_data):
    src, dst, time = graph_data
    sampler = NeighborSampler(IncidenceCSR(src, dst, 150, time), [5, 3])
    rows = torch.tensor([10, 500, 2000, 2999])

    def trees(batch: torch.Tensor, gen_seed: int):
        sub = sampler.sample(src[batch], dst[batch], time[batch], torch.Generator().manual_seed(gen_seed),
                             exclude_edge=batch, keys=batch * 31 + 7)
        return dict(zip(batch.tolist(), per_seed_trees(sub)))

    alone = trees(rows, 0)
    mixed = trees(torch.tensor([2999, 42, 10, 1234, 500, 2000]), 1)
    assert all(alone[r] == mixed[r] for r in rows.tolist()) and all(alone[r] for r in rows.tolist())


@pytest.mark.parametrize("until", [100, 11])
def test_keyed_draws_stay_uniform_over_a_star(until):
    leaves = torch.arange(1, 21)
    src, dst, time = torch.zeros(20, dtype=torch.long), leaves, torch.arange(20)
    num_seeds, fanout = 3000, 5
    sampler = NeighborSampler(IncidenceCSR(src, dst, 21, time), [fanout])
    sub = sampler.sample(torch.zeros(num_seeds, dtype=torch.long), torch.ones(num_seeds, dtype=torch.long),
                         torch.full((num_seeds,), until), torch.Generator().manual_seed(0),
                         keys=torch.arange(num_seeds))
    from_centre = sub.edge_index[1] < num_seeds
    allowed = [e for e in range(20) if e <= until]
    counts = torch.bincount(sub.edge_id[from_centre], minlength=20).double()
    expected = num_seeds * fanout / len(allowed)
    assert ((counts[allowed] - expected) ** 2 / expected).sum().item() < 45.0


@pytest.mark.parametrize("queries", [300, 5000])  # below and above the size searched in sorted order
def test_list_ends_match_brute_force(graph_data, queries):
    src, dst, time = graph_data
    n = int(torch.maximum(src, dst).max()) + 2  # the last node has no events
    g = IncidenceCSR(src, dst, n, time)
    gen = torch.Generator().manual_seed(5)
    node = torch.randint(0, n, (queries,), generator=gen)
    until = torch.randint(-5, 420, (queries,), generator=gen)  # some before every event, some after all
    end = g.end(node, until)
    node_of_entry = torch.repeat_interleave(torch.arange(n), g.rowptr[1:] - g.rowptr[:-1])
    for v, t, e in zip(node.tolist(), until.tolist(), end.tolist()):
        start, stop = int(g.rowptr[v]), int(g.rowptr[v + 1])
        assert (node_of_entry[start:stop] == v).all()
        assert e == start + int((time[g.eid[start:stop]] <= t).sum())  # the prefix at or before t
    assert torch.equal(g.end(node), g.rowptr[node + 1])
