"""Multi-GNN's adaptations as backbone options: causal port numbers, ego ids, reverse message
passing; off by default and then exactly the plain backbone."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torch_frame
import yaml
from safetensors.torch import load_model, save_model

from relssl.cli import build_parser, config_from_args, main
from relssl.data.prepare import prepare
from relssl.data.relational import RelationalData
from relssl.data.splits import TEST, TRAIN
from relssl.errors import RelsslError
from relssl.eval.nodes import NodeBatchBuilder
from relssl.graph.batch import BatchBuilder
from relssl.graph.sampler import IncidenceCSR, NeighborSampler
from relssl.nn.backbone import Backbone, ModelConfig, ego_marks
from relssl.nn.gnn import EdgeUpdatingLayer, TreeGNN
from relssl.objectives import OBJECTIVES
from relssl.train.pretrain import PretrainConfig, Pretrainer
from tests.conftest import toy_relational

ALL_ON = dict(reverse_mp=True, ports=True, ego_ids=True)


def is_new(key: str) -> bool:
    """A backbone parameter that only the options add."""
    return key == "ego" or key.startswith(("port_parent.", "port_child.")) or ".conv_rev." in key


pytestmark = pytest.mark.usefixtures("one_thread")


def event_ports(g: IncidenceCSR) -> tuple[list[int], list[int]]:
    """Each event's out-port at its source and in-port at its target."""
    return g.port[:, 0].tolist(), g.port[:, 1].tolist()


def test_port_numbers_on_a_hand_computed_graph():
    # event: 0: 0->1 @10, 1: 0->2 @5, 2: 0->1 @20, 3: 3->1 @15, 4: 0->0 @7 (self-loop), 5: 2->1 @15
    src, dst = torch.tensor([0, 0, 0, 3, 0, 2]), torch.tensor([1, 2, 1, 1, 0, 1])
    g = IncidenceCSR(src, dst, 4, torch.tensor([10, 5, 20, 15, 7, 15]))
    out_port, in_port = event_ports(g)
    # node 0 sends to 2 (@5), 0 (@7), 1 (@10, again @20): ports 0, 1, 2, and 2 again for the parallel event
    assert out_port == [2, 0, 2, 0, 1, 0]
    # node 1 hears from 0 (@10), 3 and 2 (both @15: event 3 before 5 by id), then 0 again
    assert in_port == [0, 0, 0, 1, 0, 2]
    # only the graph's own events count: without event 0, node 1 hears from 3, 2, then 0 (event 2)
    sub = IncidenceCSR(src, dst, 4, torch.tensor([10, 5, 20, 15, 7, 15]), edge_ids=torch.tensor([1, 2, 3, 4, 5]))
    assert sub.port.tolist() == [[-1, -1], [0, 0], [2, 2], [0, 0], [1, 0], [0, 1]]


def brute_force_ports(src, dst, time) -> tuple[list[int], list[int]]:
    order = sorted(range(len(src)), key=lambda e: (time[e], e))
    seen_out, seen_in, out_port, in_port = {}, {}, [0] * len(src), [0] * len(src)
    for e in order:
        out_port[e] = seen_out.setdefault(src[e], {}).setdefault(dst[e], len(seen_out[src[e]]))
        in_port[e] = seen_in.setdefault(dst[e], {}).setdefault(src[e], len(seen_in[dst[e]]))
    return out_port, in_port


def test_port_numbers_are_causal():
    """Ports match a first-contact count, and appending later events never changes earlier ports."""
    gen = torch.Generator().manual_seed(0)
    n, m = 12, 300
    src, dst = torch.randint(n, (m,), generator=gen), torch.randint(n, (m,), generator=gen)
    time = torch.randint(40, (m,), generator=gen)  # many ties
    full = IncidenceCSR(src, dst, n, time)
    assert event_ports(full) == brute_force_ports(src.tolist(), dst.tolist(), time.tolist())
    order = torch.sort(time, stable=True).indices
    src, dst, time = src[order], dst[order], time[order]
    full = IncidenceCSR(src, dst, n, time)
    for k in (50, 170):
        assert torch.equal(IncidenceCSR(src[:k], dst[:k], n, time[:k]).port, full.port[:k])
        assert torch.equal(IncidenceCSR(src, dst, n, time, edge_ids=torch.arange(k)).port[:k], full.port[:k])


def test_sampled_edges_carry_their_ports_at_parent_and_child():
    gen = torch.Generator().manual_seed(1)
    src, dst = torch.randint(30, (500,), generator=gen), torch.randint(30, (500,), generator=gen)
    g = IncidenceCSR(src, dst, 30, torch.randint(100, (500,), generator=gen))
    sub = NeighborSampler(g, [5, 3]).sample(src[:40], dst[:40], torch.full((40,), 99), gen)
    out_port, in_port = (torch.tensor(p)[sub.edge_id] for p in event_ports(g))
    leaves_parent = sub.edge_dir == 0
    assert torch.equal(sub.edge_port[:, 0], torch.where(leaves_parent, out_port, in_port))
    assert torch.equal(sub.edge_port[:, 1], torch.where(leaves_parent, in_port, out_port))
    assert sub.edge_port.max() > 2


def test_ego_marks_find_a_cycle_back_to_the_seed():
    # 0->1 @1, 1->2 @2, seed A: 2->0 @3 closes the cycle 0->1->2->0; seed B: 3->1 @4
    src, dst, time = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 0, 1]), torch.tensor([1, 2, 3, 4])
    sub = NeighborSampler(IncidenceCSR(src, dst, 4, time), [4, 4]).sample(
        src[2:], dst[2:], time[2:], torch.Generator().manual_seed(0), exclude_edge=torch.tensor([2, 3]))
    marks = ego_marks(sub)
    roots = torch.stack([src[2:], dst[2:]], 1)[sub.node_seed]  # each node's tree's root source and target
    assert torch.equal(marks, sub.node_entity.unsqueeze(1) == roots)
    reached = torch.zeros(sub.num_nodes, dtype=torch.bool).index_fill(0, sub.edge_index[0], True)  # not a root
    in_a = reached & (sub.node_seed == 0)
    # seed A's trees reach its source 2 and its target 0 again, two hops out: the cycle is visible
    assert marks[in_a & (sub.node_entity == 2), 0].any() and marks[in_a & (sub.node_entity == 0), 1].any()
    # in seed B's trees (3->1), entities 0 and 2 are nobody's endpoint and stay unmarked
    in_b = (sub.node_seed == 1) & ((sub.node_entity == 0) | (sub.node_entity == 2))
    assert in_b.any() and not marks[in_b].any()
    # a node task passes an entity as both endpoints: its returns carry both marks
    node_sub = NeighborSampler(IncidenceCSR(src, dst, 4, time), [4, 4]).sample(
        torch.tensor([1]), torch.tensor([1]), None, torch.Generator().manual_seed(0))
    assert torch.equal(ego_marks(node_sub), (node_sub.node_entity == 1).unsqueeze(1).expand(-1, 2))


def tiny_tree() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two roots (0, 1), three children each, one more hop below node 2."""
    child = torch.tensor([2, 3, 4, 5, 6, 7, 8, 9])
    parent = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    hop = torch.tensor([1, 1, 1, 1, 1, 1, 2, 2])
    direction = torch.tensor([0, 1, 1, 0, 1, 0, 1, 0])
    return torch.stack([child, parent]), hop, direction, torch.randn(8, 8, generator=torch.Generator().manual_seed(3))


def test_reverse_mp_has_separate_parameters_per_direction():
    torch.manual_seed(0)
    layer = EdgeUpdatingLayer(8, "gine", reverse=True)
    forward, backward = set(map(id, layer.conv.parameters())), set(map(id, layer.conv_rev.parameters()))
    assert forward and not forward & backward
    assert not any(torch.equal(a, b) for a, b in zip(layer.conv.parameters(), layer.conv_rev.parameters())
                   if a.numel() > 1)
    edge_index, _, direction, e = tiny_tree()
    h = torch.randn(10, 8, generator=torch.Generator().manual_seed(4))
    inward = direction == 1
    layer(h, edge_index[:, inward], e[inward], direction[inward], keep_edges=0)[0].sum().backward()
    # only events entering the receiving node: their features reach conv's edge map, never conv_rev's
    assert layer.conv.lin.weight.grad.abs().sum() > 0
    assert layer.conv_rev.lin.weight.grad is None or layer.conv_rev.lin.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("kind", ["gine", "pna"])
def test_flipping_an_edge_direction_changes_reverse_mp_outputs_only(kind):
    edge_index, hop, direction, e = tiny_tree()
    h = torch.randn(10, 8, generator=torch.Generator().manual_seed(5))
    flipped = direction.clone()
    flipped[6] = 1 - flipped[6]  # a hop-2 edge: its effect reaches root 0 through node 2
    deg = torch.tensor([4, 2, 1, 3])
    for reverse in (False, True):
        torch.manual_seed(0)
        gnn = TreeGNN(8, 2, kind, deg, reverse=reverse)
        a, b = gnn(h, edge_index, e, hop, direction), gnn(h, edge_index, e, hop, flipped)
        assert torch.equal(a[1], b[1])  # the other tree is untouched
        assert torch.equal(a[0], b[0]) != reverse  # the direction reaches a plain GNN only through e


def test_all_options_off_is_the_plain_backbone():
    """Off, the backbone has no new parameters and computes e = rows + direction over plain node
    states with one convolution per layer; on, it adds only the options' own parameters."""
    prep = prepare(toy_relational(1500))
    cfg = dict(channels=16, heads=2, fanouts=[4, 3])
    torch.manual_seed(0)
    off = Backbone(prep, ModelConfig(**cfg))
    on = Backbone(prep, ModelConfig(**cfg, **ALL_ON))
    added = set(filter(is_new, on.state_dict()))
    assert set(off.state_dict()) == set(on.state_dict()) - added
    assert {k.split(".")[0] for k in added} == {"ego", "port_parent", "port_child", "gnn"}
    batch = BatchBuilder(prep, TRAIN, [4, 3])(prep.rows(TRAIN)[200:264], torch.Generator().manual_seed(1))
    g, sub = batch.graph, batch.graph.sub
    e = off.edge_rows(g.edge_tf)[g.edge_inverse] + off.edge_direction(sub.edge_dir)
    h = off.node_const.expand(sub.num_nodes, -1)
    for i, layer in enumerate(off.gnn.layers):  # every layer on every edge (roots unchanged, test_backbone)
        h = (h + torch.relu(layer.norm(layer.conv(h, sub.edge_index, e)))) / 2
        e = e + layer.edge_mlp(torch.cat([h[sub.edge_index[0]], h[sub.edge_index[1]], e], -1)) / 2
    b = sub.num_seeds
    assert torch.allclose(off.encode_graph(batch), torch.cat([h[:b], h[b:2 * b]], -1), atol=1e-5)


def cycle_data(structures: int) -> tuple[RelationalData, torch.Tensor, torch.Tensor]:
    """Per structure three seed events: one closing a 3-cycle a->b->c->a (label 1); one closing a
    look-alike chain a->b->c->a' with a'->b'->c' (label 0), whose two-hop trees have the cycle's
    shape, times and degrees and differ only in which entity comes back; one with no history (0)."""
    rng = np.random.default_rng(0)
    src, dst, time, seeds = [], [], [], []
    for i in range(structures):
        a = 11 * i  # entities a..a+10 of this structure
        src += [a, a + 1, a + 2, a + 3, a + 4, a + 6, a + 7, a + 5, a + 9]
        dst += [a + 1, a + 2, a, a + 4, a + 5, a + 7, a + 8, a + 6, a + 10]
        time += [10 * i + t for t in (1, 2, 3, 1, 2, 1, 2, 3, 3)]
        seeds += [9 * i + 2, 9 * i + 7, 9 * i + 8]
    n = len(src)
    data = RelationalData(name="cycles", events=pd.DataFrame({"x": rng.normal(0, 1, n)}),
                          col_stypes={"x": torch_frame.numerical}, time=np.array(time), src=np.array(src),
                          dst=np.array(dst), num_entities=11 * structures)
    return data, torch.tensor(seeds), torch.tensor([1.0, 0.0, 0.0] * structures)


@pytest.fixture(scope="module")
def cycles():
    data, seeds, label = cycle_data(96)
    prep = prepare(data)
    batch = BatchBuilder(prep, TEST, [4, 4])(seeds, torch.Generator().manual_seed(0))
    return prep, batch, label


@pytest.mark.parametrize("kind, options", [
    ("gine", {}), ("gine", {"reverse_mp": True}), ("gine", {"ports": True}), ("gine", {"ego_ids": True}),
    ("gine", ALL_ON), ("pna", ALL_ON)], ids=["off", "reverse_mp", "ports", "ego_ids", "all", "pna-all"])
@pytest.mark.slow
def test_closing_a_3_cycle_is_learnt_with_ego_ids(cycles, kind, options):
    """Every setting trains (the no-history third is easy); only ego ids tell held-out cycles from
    their look-alikes, which the other options cannot see without entity identities."""
    prep, batch, label = cycles
    torch.manual_seed(0)
    model = Backbone(prep, ModelConfig(channels=16, heads=2, row_layers=1, gnn=kind, fanouts=[4, 4], **options))
    head = torch.nn.Linear(32, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    train = torch.arange(len(label)) < 64 * 3  # the first 64 structures; 32 held out
    losses = []
    for _ in range(120):
        logit = head(model.encode_graph(batch)).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logit[train], label[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.55, losses[::20]  # the best constant (a third positive) scores 0.637
    with torch.no_grad():
        logit = head(model.encode_graph(batch)).squeeze(-1)
    lookalike = ~train & (torch.arange(len(label)) % 3 < 2)  # held-out cycles and chains, half each
    accuracy = ((logit[lookalike] > 0).float() == label[lookalike]).float().mean().item()
    if options.get("ego_ids"):
        assert accuracy > 0.95 and losses[-1] < 0.1, (accuracy, losses[-1])
    else:
        assert accuracy < 0.8, accuracy


@pytest.mark.parametrize("kind", ["gine", "pna"])
def test_every_objective_takes_a_step_with_all_options(kind):
    prep = prepare(toy_relational(1200))
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn=kind, gnn_layers=2, fanouts=[4, 2], **ALL_ON)
    cfg = PretrainConfig(data="toy", objectives=list(OBJECTIVES), batch_size=64, device="cpu", eval_rows=64,
                         objective_options={"lp_negatives": 8}, model=model)
    trainer = Pretrainer(cfg, prep, progress=False)
    loss, outputs = trainer.train_step(prep.rows(TRAIN)[300:364], 1, 0)
    assert np.isfinite(loss) and [o.loss.isfinite().item() for o in outputs] == [True] * len(OBJECTIVES)
    new = {k: p.grad for k, p in trainer.model.named_parameters() if is_new(k)}
    assert new and all(g is not None and g.abs().sum() > 0 for g in new.values()), [k for k, g in new.items()
                                                                                   if g is None or not g.any()]
    assert np.isfinite(trainer.evaluate(TEST)["loss"])


def test_node_batches_and_saved_weights_with_all_options(tmp_path):
    prep = prepare(toy_relational(1200))
    cfg = ModelConfig(channels=16, heads=2, fanouts=[4, 2], gnn="pna", **ALL_ON)
    torch.manual_seed(0)
    model = Backbone(prep, cfg).eval()
    nodes = NodeBatchBuilder(prep, TEST, [4, 2])(torch.arange(40), torch.Generator().manual_seed(0))
    states = model.encode_graph(nodes)
    assert states.shape == (40, 32) and states.isfinite().all()
    save_model(torch.nn.ModuleDict({"backbone": model}), str(tmp_path / "m.safetensors"))
    torch.manual_seed(1)
    again = Backbone(prep, cfg).eval()
    load_model(torch.nn.ModuleDict({"backbone": again}), str(tmp_path / "m.safetensors"))
    assert torch.equal(again.encode_graph(nodes), states)
    plain = torch.nn.ModuleDict({"backbone": Backbone(prep, ModelConfig(channels=16, heads=2, fanouts=[4, 2],
                                                                        gnn="pna"))})
    missing, unexpected = load_model(plain, str(tmp_path / "m.safetensors"), strict=False)
    assert not missing and unexpected and all(is_new(k.removeprefix("backbone.")) for k in unexpected)


def test_flags_reach_the_config_and_old_configs_load_with_options_off(tmp_path):
    parse = lambda *flags: config_from_args(build_parser().parse_args(["pretrain", *flags]))  # noqa: E731
    assert all(getattr(parse("--reverse-mp", "--ports", "--ego-ids").model, k) for k in ALL_ON)
    assert not any(getattr(parse().model, k) for k in ALL_ON)
    old = asdict(PretrainConfig())  # a run folder's config.yaml from before the options
    old["model"] = {k: v for k, v in old["model"].items() if k not in ALL_ON}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert not any(getattr(parse("--config", str(tmp_path / "old.yaml")).model, k) for k in ALL_ON)
    cfg = parse("--config", str(tmp_path / "old.yaml"), "--ports")
    assert (cfg.model.ports, cfg.model.reverse_mp, cfg.model.ego_ids) == (True, False, False)
    (tmp_path / "on.yaml").write_text(yaml.safe_dump({"model": ALL_ON}))
    cfg = parse("--config", str(tmp_path / "on.yaml"), "--no-ego-ids")
    assert (cfg.model.reverse_mp, cfg.model.ports, cfg.model.ego_ids) == (True, True, False)
    (tmp_path / "bad.yaml").write_text("model:\n  ports: 'false'\n")
    with pytest.raises(RelsslError, match="config: model: ports: expected true or false, got 'false'"):
        parse("--config", str(tmp_path / "bad.yaml"))


@pytest.mark.slow
def test_pretrain_finetune_probe_and_embed_carry_the_options(tmp_path):
    """A pre-trained run's options reach fine-tuning, probing and embedding through its config.yaml."""
    tiny = ["--channels", "16", "--heads", "2", "--row-layers", "1", "--gnn-layers", "2", "--fanouts", "4,2",
            "--batch-size", "128", "--train-rows-per-epoch", "384", "--eval-rows", "256", "--no-progress"]
    assert main(["generate", "aml", "--rows", "2000", "--seed", "1", "--laundering-rate", "0.05",
                 "--out", str(tmp_path)]) == 0
    csv, pre = tmp_path / "Synthetic_Trans.csv", tmp_path / "pre"
    assert main(["pretrain", "--data", str(csv), "--objectives", "mcm,lp", "--epochs", "1", "--out", str(pre),
                 "--reverse-mp", "--ports", "--ego-ids", *tiny]) == 0
    assert all(yaml.safe_load((pre / "config.yaml").read_text())["model"][k] for k in ALL_ON)
    for mode in ("finetune", "probe"):
        out = tmp_path / mode
        assert main(["finetune", "--data", str(csv), "--init", str(pre), "--mode", mode, "--epochs", "1",
                     "--out", str(out), *tiny]) == 0
        assert all(yaml.safe_load((out / "config.yaml").read_text())["train"]["model"][k] for k in ALL_ON)
    assert main(["finetune", "--data", str(csv), "--init", str(pre), "--no-ports", "--out", str(tmp_path / "x"),
                 *tiny]) == 2  # a pre-trained backbone keeps its options
    assert main(["embed", "--run", str(pre), "--out", str(tmp_path / "e.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "e.parquet").filter(like="emb_").notna().all().all()
