"""Trees over a relational database: every sampled tree checked against a brute-force reference."""
from collections import Counter

import pytest
import torch

from relssl.graph.relations import RelationGraph


def toy_database(seed: int = 0):
    """orders (timed) -> customers (static) and -> products (timed: listed at a time); products ->
    products (a self-reference: the model it replaces); some keys null."""
    gen = torch.Generator().manual_seed(seed)
    customers, products, orders = 40, 30, 600
    product_time = torch.randint(0, 50, (products,), generator=gen)
    order_time = torch.randint(0, 200, (orders,), generator=gen)
    buyer = torch.randint(0, customers, (orders,), generator=gen)
    item = torch.randint(0, products, (orders,), generator=gen)
    item[::37] = -1
    replaces = torch.randint(0, products, (products,), generator=gen)
    replaces[::4] = -1
    tables = ["orders", "customers", "products"]
    links = {(0, "buyer"): (1, buyer), (0, "item"): (2, item), (2, "replaces"): (2, replaces)}
    return tables, [orders, customers, products], [order_time, None, product_time], links


def candidates(graph, times, links, table, row, seed_table, seed_row, until):
    """Brute force: per relation leaving ``table``, the neighbours of ``row`` a tree may take."""
    out = {}
    for r, rel in enumerate(graph.relations):
        if rel.src != table:
            continue
        (child, name), (parent, target) = [(k, v) for k, v in links.items()
                                           if f"{graph.tables[k[0]]}.{k[1]}" == rel.name.removesuffix("^-1")][0]
        if rel.name.endswith("^-1"):
            found = [i for i in range(len(target)) if int(target[i]) == row]
        else:
            found = [int(target[row])] if int(target[row]) >= 0 else []
        t = times[rel.dst]
        found = [i for i in found if until is None or t is None or int(t[i]) <= until]
        out[r] = {i for i in found if not (rel.dst == seed_table and i == seed_row)}
    return out


@pytest.mark.parametrize("time_aware", [True, False])
@pytest.mark.parametrize("seed_table", [0, 2])
def test_trees_match_brute_force(time_aware, seed_table):
    tables, num_rows, times, links = toy_database()
    graph = RelationGraph(tables, num_rows, times, links)
    fanouts = [3, 2]
    seeds = torch.arange(0, num_rows[seed_table], 3)
    seed_time = times[seed_table][seeds] if time_aware else None
    tree = graph.sample(seed_table, seeds, seed_time, fanouts, torch.Generator().manual_seed(1))
    b = len(seeds)
    assert tree.node_row[:b].tolist() == seeds.tolist() and (tree.node_table[:b] == seed_table).all()
    child, parent = tree.edge_index.tolist()
    # edge j reaches node b + j, edges grouped by hop: the nodes up to a depth are a prefix, as the tree GNN expects
    assert child == list(range(b, tree.num_nodes)) and all(p < c for c, p in zip(child, parent))
    assert (tree.edge_hop[1:] >= tree.edge_hop[:-1]).all()
    taken = {}
    for e, (c, p) in enumerate(zip(child, parent)):
        assert tree.node_seed[c] == tree.node_seed[p]
        taken.setdefault((p, int(tree.edge_relation[e])), []).append(int(tree.node_row[c]))
        rel = graph.relations[int(tree.edge_relation[e])]
        assert rel.src == tree.node_table[p] and rel.dst == tree.node_table[c]
    depth = torch.zeros(tree.num_nodes, dtype=torch.long)
    for c, p in zip(child, parent):
        depth[c] = depth[p] + 1
    for node in range(tree.num_nodes):
        if depth[node] >= len(fanouts):
            continue
        owner = int(tree.node_seed[node])
        until = int(seed_time[owner]) if time_aware else None
        allowed = candidates(graph, times, links, int(tree.node_table[node]), int(tree.node_row[node]),
                             seed_table, int(seeds[owner]), until)
        for r, pool in allowed.items():
            got = taken.get((node, r), [])
            assert len(set(got)) == len(got) == min(fanouts[depth[node]], len(pool)), (node, r)
            assert set(got) <= pool


def test_static_tables_are_always_visible_and_timed_ones_are_cut():
    tables, num_rows, times, links = toy_database()
    graph = RelationGraph(tables, num_rows, times, links)
    early = (times[0] == times[0].min()).nonzero()[:1, 0]
    tree = graph.sample(0, early, times[0][early], [5, 5], torch.Generator().manual_seed(0))
    reached = tree.node_table == 0
    assert (times[0][tree.node_row[reached]] <= times[0][early]).all()
    assert (tree.node_table == 1).any()  # the customer, static, is reached whatever the time


def test_visible_rows_only():
    tables, num_rows, times, links = toy_database()
    hidden = torch.ones(num_rows[0], dtype=torch.bool)
    hidden[300:] = False
    graph = RelationGraph(tables, num_rows, times, links, visible=[hidden, None, None])
    tree = graph.sample(1, torch.arange(40), None, [10, 10], torch.Generator().manual_seed(0))
    assert (tree.node_row[tree.node_table == 0] < 300).all()


def test_one_seed_one_tree_and_uniform_draws():
    tables, num_rows, times, links = toy_database()
    graph = RelationGraph(tables, num_rows, times, links)
    a, b = (graph.sample(1, torch.tensor([0, 1]), None, [4, 3], torch.Generator().manual_seed(7)) for _ in range(2))
    assert torch.equal(a.node_row, b.node_row) and torch.equal(a.edge_index, b.edge_index)
    # customer 5's orders, one drawn at a time many times: each about equally often
    orders = (links[(0, "buyer")][1] == 5).nonzero().squeeze(1).tolist()
    gen, counts = torch.Generator().manual_seed(0), Counter()
    for _ in range(3000):
        tree = graph.sample(1, torch.tensor([5]), None, [1], gen)
        counts.update(tree.node_row[tree.node_table == 0].tolist())
    assert set(counts) == set(orders)
    expected = 3000 / len(orders)
    assert all(abs(c - expected) < 5 * expected ** 0.5 for c in counts.values()), counts


def test_keyed_trees_do_not_depend_on_their_batch():
    tables, num_rows, times, links = toy_database()
    graph = RelationGraph(tables, num_rows, times, links)

    def trees(rows: list[int], gen_seed: int) -> dict[int, list[tuple[int, int, int]]]:
        rows_t = torch.tensor(rows)
        tree = graph.sample(0, rows_t, times[0][rows_t], [4, 3], torch.Generator().manual_seed(gen_seed),
                            keys=rows_t * 13 + 1)
        nodes = list(zip(tree.node_seed.tolist(), tree.node_table.tolist(), tree.node_row.tolist()))
        return {r: [n[1:] for n in nodes if n[0] == i] for i, r in enumerate(rows)}

    alone, mixed = trees([3, 77, 400], 0), trees([400, 9, 3, 250, 77], 1)
    assert all(alone[r] == mixed[r] and len(alone[r]) > 1 for r in (3, 77, 400))
