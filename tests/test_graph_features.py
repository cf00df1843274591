"""Causal graph features (relssl.eval.graph_features) and `relssl finetune --mode gbdt-graph`:
hand-computed values, a brute-force reference, causality, the K bound, and trees that learn a
label only the graph shows."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from relssl.cli import main
from relssl.data.prepare import prepare
from relssl.eval.baseline import entity_matrix, graph_features
from relssl.eval.graph_features import CausalGraph, bench_graph_features, edge_features, node_features
from relssl.train.pretrain import PretrainConfig
from tests.test_downstream import toy_graph

DAY = 86_400


pytestmark = pytest.mark.usefixtures("one_thread")


def features(src, dst, time, values, num_nodes, k=32) -> pd.DataFrame:
    return edge_features(CausalGraph(src, dst, torch.tensor(time), values, num_nodes, ["amt"]), k=k)


def test_hand_computed_features_on_a_tiny_graph():
    a, b, c = 0, 1, 2
    events = [(a, b, 0, 1.0),        # 0
              (b, c, DAY // 2, 2.0),  # 1
              (c, a, DAY, 3.0),       # 2: closes the 3-cycle a -> b -> c -> a
              (a, c, 2 * DAY, 4.0),   # 3: parallel to the 2-path a -> b -> c (scatter-gather)
              (c, a, 2 * DAY, 5.0),   # 4: same time as 3, so each sees the other (a 2-cycle)
              (a, b, 10 * DAY, 6.0)]  # 5: the 7-day window is empty again
    src, dst, time, amt = map(list, zip(*events))
    f = features(src, dst, time, [[x] for x in amt], 3)
    # row 3: a -> c at day 2 sees rows 0, 1, 2 and 4 (a tie), never itself
    r = f.loc[3]
    assert (r.src_out_all_count, r.src_out_all_sum_amt) == (1, 1.0)  # a -> b
    assert (r.src_in_all_count, r.src_in_all_sum_amt, r.src_in_all_mean_amt) == (2, 8.0, 4.0)  # c -> a twice
    assert (r.src_in_1d_count, r.src_in_1d_sum_amt) == (1, 5.0)  # the window is (t - 1 day, t]
    assert (r.src_fan_in, r.src_fan_out, r.src_recent_in_width) == (1, 1, 1)
    assert (r.src_since_prev, r.src_age) == (0, 2 * DAY)
    assert (r.dst_out_all_count, r.dst_fan_out, r.dst_in_all_count) == (2, 1, 1)
    assert (r.parallel, r.cycle2, r.cycle3, r.scatter_gather) == (0, 2, 0, 1)
    r = f.loc[4]  # c -> a: a -> b (day 0) then b -> c (day 0.5) closes the cycle; a -> c (a tie) is a 2-cycle
    assert (r.parallel, r.cycle2, r.cycle3, r.scatter_gather) == (1, 1, 1, 0)
    assert (r.src_fan_in, r.src_recent_in_width, r.src_out_all_sum_amt) == (2, 2, 3.0)
    r = f.loc[2]
    assert (r.cycle3, r.dst_out_1d_count, r.dst_out_7d_count, r.src_since_prev) == (1, 0, 1, DAY // 2)
    r = f.loc[5]
    assert (r.src_out_7d_count, r.src_out_all_count, r.src_out_all_mean_amt, r.src_fan_out) == (0, 2, 2.5, 2)
    assert (r.parallel, r.cycle3, r.src_since_prev) == (1, 1, 8 * DAY)
    r = f.loc[0]  # nothing before it
    assert r.src_out_all_count == 0 and r.src_fan_out == 0 and np.isnan(r.src_out_all_mean_amt)
    assert np.isnan(r.src_since_prev) and np.isnan(r.dst_age)


def brute_force(src, dst, time, values) -> pd.DataFrame:
    """The features by their definition, one row and one visible event at a time."""
    values = np.nan_to_num(np.asarray(values, dtype=float))
    rows = []
    for i, (u, v, t) in enumerate(zip(src, dst, time)):
        seen = [j for j in range(len(src)) if j != i and time[j] <= t]
        row = {}
        for prefix, x in (("src", u), ("dst", v)):
            for side, ends in (("out", src), ("in", dst)):
                mine = [j for j in seen if ends[j] == x]
                for window, width in (("1d", DAY), ("7d", 7 * DAY), ("all", None)):
                    inside = [j for j in mine if width is None or time[j] > t - width]
                    row[f"{prefix}_{side}_{window}_count"] = len(inside)
                    total = values[inside, 0].sum()
                    row[f"{prefix}_{side}_{window}_sum_amt"] = total
                    row[f"{prefix}_{side}_{window}_mean_amt"] = total / len(inside) if inside else np.nan
                others = {(dst if side == "out" else src)[j] for j in mine}
                row[f"{prefix}_fan_{side}"] = row[f"{prefix}_recent_{side}_width"] = len(others)
            times = [time[j] for j in seen if x in (src[j], dst[j])]
            row[f"{prefix}_since_prev"] = t - max(times) if times else np.nan
            row[f"{prefix}_age"] = t - min(times) if times else np.nan
        row["parallel"] = sum(src[j] == u and dst[j] == v for j in seen)
        row["cycle2"] = sum(src[j] == v and dst[j] == u for j in seen)
        for name, (p, q) in (("cycle3", (v, u)), ("scatter_gather", (u, v))):
            row[name] = len({dst[a] for a in seen for b in seen
                             if src[a] == p and dst[a] == src[b] and dst[b] == q and dst[a] not in (u, v)
                             and time[a] <= time[b]})
        rows.append(row)
    return pd.DataFrame(rows)


def random_events(n, nodes, days, seed):
    rng = np.random.default_rng(seed)
    time = np.sort(rng.integers(0, days * 4, n)) * (DAY // 4)  # quarter days: many ties
    values = rng.lognormal(3, 1, (n, 1))
    values[rng.random(n) < 0.1] = np.nan  # a missing value adds nothing to sums
    return rng.integers(0, nodes, n), rng.integers(0, nodes, n), time, values


def test_features_match_their_definition_on_a_random_multigraph():
    """Ties, self-loops, parallel events and missing values, with K above every degree."""
    src, dst, time, values = random_events(120, 8, 12, seed=3)
    assert (src == dst).any() and len(np.unique(time)) < 100
    got = features(src, dst, time, values, 8, k=200)
    want = brute_force(src.tolist(), dst.tolist(), time.tolist(), values)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)


def test_appending_later_events_changes_no_earlier_row():
    src, dst, time, values = random_events(300, 20, 20, seed=0)
    more_src, more_dst, more_time, more_values = random_events(100, 25, 5, seed=1)
    both = [np.concatenate([a, b]) for a, b in zip((src, dst, time, values), (more_src, more_dst,
                                                                               more_time + time[-1] + 1, more_values))]
    for k in (3, 32):  # a small K: the motif window moves with every event
        before = features(src, dst, time, values, 25, k=k)
        after = features(*both, 25, k=k)
        pd.testing.assert_frame_equal(after.iloc[:300], before, check_exact=True)  # bit for bit


def test_a_row_never_counts_itself():
    f = features([0, 1], [1, 1], [5, 9], [[1.0], [2.0]], 2)  # an event, then a self-loop
    for row in (0, 1):
        assert f.loc[row, ["parallel", "cycle2", "cycle3", "scatter_gather"]].eq(0).all()
    assert f.loc[1, ["src_out_all_count", "src_fan_out", "src_in_all_count", "src_fan_in"]].tolist() == [0, 0, 1, 1]
    twins = features([0, 0], [1, 1], [5, 5], [[1.0], [2.0]], 2)  # two events at one time see each other once
    assert twins["parallel"].tolist() == [1, 1] and twins["src_out_all_sum_amt"].tolist() == [2.0, 1.0]
    assert twins["dst_fan_in"].tolist() == [1, 1] and twins["src_since_prev"].tolist() == [0, 0]


def test_motifs_search_only_the_k_most_recent_events():
    """u -> w -> v, then u pays 5 others, then u -> v: the scatter-gather through w is found when
    u's 6 latest events fit in K, not when they do not."""
    u, v, w = 0, 1, 2
    src, dst = [u, w, u, u, u, u, u, u], [w, v, 3, 4, 5, 6, 7, v]
    time = list(range(len(src)))
    found = [features(src, dst, time, [[0.0]] * 8, 8, k=k).loc[7, "scatter_gather"] for k in (5, 6)]
    assert found == [0, 1]


def test_node_features_are_endpoint_features_at_the_end_of_history():
    src, dst, time, values = random_events(200, 12, 10, seed=5)
    graph = CausalGraph(src, dst, torch.tensor(time), values, 12, ["amt"])
    nodes, edges = node_features(graph), edge_features(graph)
    assert len(nodes) == 12
    assert nodes["out_all_count"].tolist() == np.bincount(src, minlength=12).tolist()
    assert nodes["fan_in"].tolist() == [len(set(src[dst == n])) for n in range(12)]
    assert np.allclose(nodes["in_cycle3_sum"], np.bincount(dst, weights=edges["cycle3"], minlength=12))
    assert nodes["since_prev"].min() == 0 and nodes["since_prev"].max() <= time[-1] - time[0]


def test_node_task_matrix_is_the_entity_matrix_plus_node_features():
    prep = prepare(toy_graph(n=600, entities=40))
    rows = np.array([5, 0, 39])
    x, categorical = graph_features(prep, "node", rows)
    own, own_categorical = entity_matrix(prep)
    nodes = node_features(CausalGraph.from_prepared(prep))
    assert x.shape == (3, own.shape[1] + nodes.shape[1]) and not categorical[own.shape[1]:].any()
    np.testing.assert_array_equal(x, np.concatenate([own[rows], nodes.to_numpy()[rows]], axis=1))
    bench = bench_graph_features(prep)
    assert bench["rows"] == 600 and bench["features"] == 52 and bench["rows_per_s"] > 0


@pytest.fixture(scope="module")
def cycles(tmp_path_factory):
    """Transactions whose label says "this payment closes a 3-cycle" (injected a -> b, b -> c, c -> a
    within 20 minutes, among random payments): nothing in a row's own columns shows it."""
    out = tmp_path_factory.mktemp("cycles")
    rng = np.random.default_rng(0)
    nodes, noise, triangles = 400, 2000, 200
    a, b, c = (rng.integers(0, nodes, triangles) for _ in range(3))
    start = rng.integers(0, 30 * DAY - 3600, triangles)
    src = np.concatenate([rng.integers(0, nodes, noise), a, b, c])
    dst = np.concatenate([rng.integers(0, nodes, noise), b, c, a])
    time = np.concatenate([rng.integers(0, 30 * DAY, noise), start, start + 600, start + 1200])
    label = np.concatenate([np.zeros(noise + 2 * triangles, int), np.ones(triangles, int)])
    n = len(src)
    pd.DataFrame({"from": src, "to": dst, "ts": time + 1_600_000_000, "amount": rng.lognormal(5, 1, n).round(2),
                  "channel": rng.choice(["wire", "card", "cash"], n), "closes_cycle": label}
                 ).sort_values("ts").to_csv(out / "events.csv", index=False)
    schema = {"name": "cycles", "events": {
        "path": "events.csv", "columns": {"amount": {"stype": "numerical", "transform": "log1p"},
                                          "channel": "categorical", "ts": {"stype": "timestamp", "unit": "s"}},
        "time": "ts", "source": "from", "target": "to", "labels": ["closes_cycle"]}}
    (out / "cycles.yaml").write_text(yaml.safe_dump(schema))
    return out / "cycles.yaml"


def test_cli_gbdt_graph_learns_a_cycle_that_raw_columns_cannot_see(cycles, tmp_path, capsys):
    finals = {}
    for mode in ("gbdt", "gbdt-graph"):
        out = tmp_path / mode
        assert main(["finetune", "--data", str(cycles), "--mode", mode, "--out", str(out), "--no-progress"]) == 0
        finals[mode] = json.loads((out / "final.json").read_text())
        assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "data.json", "final.json"]
    graph, raw = finals["gbdt-graph"], finals["gbdt"]
    assert graph["mode"] == "gbdt-graph" and graph["task"] == "edge:closes_cycle" and graph["train_positives"] > 50
    assert {"threshold", "val/f1", "test/f1", "test/pr_auc", "test/roc_auc"} <= set(graph)
    assert graph["test/pr_auc"] > 0.95 and graph["test/f1"] > 0.9
    assert raw["test/pr_auc"] < 0.3 and graph["test/f1"] > raw["test/f1"] + 0.5
    assert "test/pr_auc" in capsys.readouterr().out


def test_cli_gbdt_graph_refuses_a_pretrained_backbone(cycles, tmp_path, capsys):
    run = tmp_path / "pre"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(asdict(PretrainConfig(data=str(cycles)))))
    (run / "model.safetensors").write_bytes(b"")
    assert main(["finetune", "--data", str(cycles), "--mode", "gbdt-graph", "--init", str(run),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("relssl: error:") and "--mode gbdt-graph" in err and "no --init" in err and "\n" not in err
    assert not (tmp_path / "r").exists()
