"""Feat2Vec: the two-step noise distribution, the score and its ranking, MPR, learning, CLI and errors."""
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch_frame

from relssl.cli import main
from relssl.data.prepare import prepare, prepare_database
from relssl.data.relational import RelationalData
from relssl.data.splits import TRAIN, VAL
from relssl.errors import RelsslError
from relssl.metrics.ranking import percentile_ranks
from relssl.feat2vec import Feat2Vec, NoiseSampler, feat2vec_step, lookup_values, parse_groups, rank_group
from relssl.train.feat2vec import Feat2VecConfig, Feat2VecTrainer
from relssl.train.pretrain import Pretrainer
from tests.conftest import toy_relational
from tests.test_objectives import small_config, train


@pytest.fixture(scope="module")
def table():
    return prepare(toy_relational(2000, graph=False))


@pytest.fixture(scope="module")
def keyed():
    return prepare(toy_relational(2000))


def test_sampler_frequencies_follow_alpha1_and_alpha2():
    # Group 0: training counts 60/30/10 of values 0..2 (value 3 only outside training);
    # group 1: counts 50/25/25. Parameter counts 16 and 81.
    g0 = torch.tensor([0] * 60 + [1] * 30 + [2] * 10 + [3] * 20)
    g1 = torch.tensor([0] * 50 + [1] * 25 + [2] * 25 + [0] * 20)
    train_rows = torch.arange(100)
    rankable = [torch.ones(4, dtype=torch.bool), torch.ones(3, dtype=torch.bool)]
    sampler = NoiseSampler([g0, g1], rankable, train_rows, torch.tensor([16, 81]), alpha1=0.25, alpha2=0.75)
    group, rep, log_q = sampler.sample(20_000, 5, torch.Generator().manual_seed(0))
    n = group.numel()
    # Step 1: ∝ params^0.25 = 2 : 3.
    assert abs(float((group == 0).sum()) / n - 0.4) < 0.01
    for g, (ids, counts) in enumerate([(g0, torch.tensor([60.0, 30, 10])), (g1, torch.tensor([50.0, 25, 25]))]):
        drawn = ids[rep[group == g]]  # the representative row carries the drawn value
        assert (rep[group == g] < 100).all()  # only training rows
        expected = counts ** 0.75 / (counts ** 0.75).sum()
        freq = torch.bincount(drawn, minlength=len(counts) + 1).double() / len(drawn)
        assert freq[len(counts):].sum() == 0  # a value unseen in training is never drawn
        assert torch.allclose(freq[: len(counts)], expected.double(), atol=0.01), (freq, expected)
        assert torch.allclose(log_q[group == g], expected.log().double()[drawn], atol=1e-9)
    # A real row with a value unseen in training is corrected as if seen once.
    true = sampler.true_log_q(torch.tensor([100]), torch.tensor([[0]]))
    assert torch.isclose(true, (1.0 / (torch.tensor([60.0, 30, 10]) ** 0.75).sum()).log().double())
    supervised = NoiseSampler([g0, g1], rankable, train_rows, torch.tensor([16, 81]), target=0)
    assert (supervised.sample(100, 5, torch.Generator().manual_seed(1))[0] == 0).all()


def test_group_probabilities_use_parameter_counts(keyed):
    task = Feat2Vec(keyed, parse_groups(None, keyed), channels=8)
    names = [g.name for g in task.groups]
    assert names == ["x", "a", "b", "c", "@source", "@target"]  # the encoded column order, then the keys
    mlp = sum(p.numel() for p in task.head.extract[1].parameters())
    assert task.head.params[1] == 5 * 8 + mlp  # 5 categories x 8 dims of embedding table + the group MLP
    assert task.head.params[4] == 200 * 8  # entity table
    expected = task.head.params.double() ** 0.25
    assert torch.allclose(task.sampler.group_prob, expected / expected.sum())


def test_percentile_ranks_hand_computed():
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 5.0, 5.0], [4.0, 3.0, 9.0]])
    truth = torch.tensor([0, 1, 1, 1])
    # first: 0 others at least as high -> 0; all tied -> 2/2 (pessimistic); one tie -> 1/2; both above -> 2/2.
    assert percentile_ranks(scores, truth).tolist() == [0.0, 1.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        percentile_ranks(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))


def brute_fm(emb: torch.Tensor) -> torch.Tensor:
    """Σ_{i<j} <e_i, e_j> by explicit pairs."""
    return sum((emb[:, i] * emb[:, j]).sum(-1) for i, j in itertools.combinations(range(emb.shape[1]), 2))


def test_ranking_and_pairs_follow_the_full_factorisation_machine_score():
    gen = torch.Generator().manual_seed(0)
    emb, cand = torch.randn(6, 4, 3, generator=gen), torch.randn(7, 3, generator=gen)
    truth = torch.randint(7, (6,), generator=gen)
    emb[:, 2] = cand[truth]
    full = torch.stack([brute_fm(torch.cat([emb[:, :2], cand[v].expand(6, 1, 3), emb[:, 3:]], 1)) for v in range(7)], 1)
    assert torch.equal(rank_group(emb, cand, 2, truth), percentile_ranks(full, truth))
    # A pair's score difference equals the difference of the two rows' full scores.
    group = torch.randint(4, (6, 5), generator=gen)
    neg = torch.randn(6, 5, 3, generator=gen)
    step = feat2vec_step(emb, neg, group, torch.zeros(6, 5), torch.zeros(6, 5), torch.zeros(4), 5)
    corrupted = emb.unsqueeze(1).repeat(1, 5, 1, 1)
    corrupted.scatter_(2, group[..., None, None].expand(6, 5, 1, 3), neg.unsqueeze(2))
    beats = brute_fm(emb).unsqueeze(1) > brute_fm(corrupted.flatten(0, 1)).view(6, 5)
    assert step.sums["pair_correct"] == float(beats.sum())


def small(**kw) -> Feat2VecConfig:
    return Feat2VecConfig(**{"data": "toy", "device": "cpu", "channels": 16, "batch_size": 256, **kw})


def test_feat2vec_ranks_learnable_groups_far_below_half(table):
    trainer = Feat2VecTrainer(small(eval_groups="b;c"), table)
    for epoch in range(1, 13):
        trainer.train_epoch(epoch, progress=False)
    final = trainer.final()
    # 'b' copies 'a' (and follows 'x'): ranked first; 'c' is noise: no better than chance.
    assert final["feat2vec/mpr/b"] < 0.1 < 0.4 < final["popularity/mpr/b"], final
    assert final["feat2vec/mpr/c"] > 0.3, final
    assert final["coverage/b"] == 1.0 and final["candidates/b"] == 5


def test_training_is_reproducible_per_seed(table):
    runs = []
    for _ in range(2):
        trainer = Feat2VecTrainer(small(seed=3), table)
        trainer.train_epoch(1, progress=False)
        runs.append(trainer.evaluate(VAL))
    assert runs[0] == runs[1]


def embedding_toy(n: int = 1500, seed: int = 0) -> RelationalData:
    """An embedding-stype column (as text vectors arrive) that encodes 'b'; 'c' is noise."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 4, n)
    basis = rng.normal(size=(4, 6)).astype(np.float32)
    vectors = basis[b] + rng.normal(0, 0.05, (n, 6)).astype(np.float32)
    events = pd.DataFrame({"b": [f"b{v}" for v in b], "c": [f"c{v}" for v in rng.integers(0, 3, n)]})
    return RelationalData(name="emb", events=events, col_stypes={"e": torch_frame.embedding, "b": torch_frame.categorical,
                                                                  "c": torch_frame.categorical},
                          time=np.sort(rng.integers(0, 10 * 86400, n)), vectors={"e": vectors})


def test_embedding_column_group_predicts_its_category():
    prep = prepare(embedding_toy())
    trainer = Feat2VecTrainer(small(groups="text=e;b;c", eval_groups="b", batch_size=64, lr=1e-2), prep)
    assert trainer.model.task.head.params[0] > 6 * 16  # the text group's linear map counts
    for epoch in range(1, 6):
        trainer.train_epoch(epoch, progress=False)
    assert trainer.final()["feat2vec/mpr/b"] < 0.15


@pytest.mark.slow
def test_objective_trains_with_mcm_under_moco_through_shared_cells(keyed):
    trainer = Pretrainer(small_config(["mcm", "feat2vec"], combiner="moco",
                                      objective_options={"feat2vec_target": "b", "feat2vec_groups": "a;b;c;@target"}),
                         keyed)
    step = trainer.objectives[1](trainer.model, trainer.builders[TRAIN](keyed.rows(TRAIN)[:64], torch.Generator()),
                                 None, torch.Generator().manual_seed(0))
    step.loss.backward()
    assert trainer.model.row.cells.encoder_dict["categorical"].emb.weight.grad.abs().sum() > 0
    before, after = train(trainer, 3)
    assert after["feat2vec/mpr"] < 0.2 < before["feat2vec/mpr"], (before, after)
    assert {"feat2vec/loss", "feat2vec/pair_acc", "mcm/acc"} <= set(after)


@pytest.mark.parametrize("spec, message", [
    ("a;nope", "column 'nope' of group 'nope' is not a feature column"),
    ("ab=a+b;b", "column 'b' is in groups 'ab' and 'b'"),
    ("a", "declare at least two"),
    ("a;b;a=c", "group 'a' is declared twice"),
    ("a;@source", "no source/target keys"),
])
def test_bad_groups_are_named(table, spec, message):
    with pytest.raises(RelsslError, match=message):
        parse_groups(spec, table)


def test_bad_options_are_named(table):
    groups = parse_groups("a;b;c", table)
    with pytest.raises(RelsslError, match="--target 'x': not a feature group"):
        Feat2Vec(table, groups, 8, target="x")
    with pytest.raises(RelsslError, match="alpha2 1.5"):
        Feat2Vec(table, groups, 8, alpha2=1.5)
    with pytest.raises(RelsslError, match="negatives 0"):
        Feat2Vec(table, groups, 8, negatives=0)
    with pytest.raises(RelsslError, match="feat2vec_groups: column 'zz'"):
        Pretrainer(small_config(["feat2vec"], objective_options={"feat2vec_groups": {"g": ["zz"], "a": "a"}}), table)


@pytest.mark.slow
def test_pretrain_cli_takes_feat2vec_options(aml_csv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--data", aml_csv, "--objectives", "mcm,feat2vec", "--combiner", "moco",
                 "--feat2vec-target", "Receiving Currency", "--feat2vec-negatives", "3", "--channels", "8",
                 "--heads", "2", "--fanouts", "2", "--gnn-layers", "1", "--row-layers", "1", "--epochs", "1",
                 "--train-rows-per-epoch", "300", "--eval-rows", "200", "--no-progress", "--out", str(run)]) == 0
    final = json.loads((run / "final.json").read_text())
    assert {"feat2vec/loss", "feat2vec/pair_acc", "feat2vec/mpr", "mcm/acc"} <= set(final)
    capsys.readouterr()
    assert main(["pretrain", "--data", aml_csv, "--feat2vec-alpha1", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "--feat2vec-alpha1 needs feat2vec in --objectives" in capsys.readouterr().err


@pytest.fixture(scope="module")
def aml_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("aml")
    assert main(["generate", "aml", "--rows", "3000", "--seed", "1", "--out", str(out)]) == 0
    return str(out / "Synthetic_Trans.csv")


TINY = ["--channels", "8", "--epochs", "1", "--train-rows-per-epoch", "600", "--eval-rows", "300", "--device", "cpu",
        "--no-progress"]


def test_cli_feat2vec_writes_a_run_folder(aml_csv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["feat2vec", "--data", aml_csv, "--eval-groups", "To Bank;@target", "--out", str(run), *TINY]) == 0
    for name in ("config.yaml", "metrics.jsonl", "final.json", "model.safetensors"):
        assert (run / name).stat().st_size > 0, name
    final = json.loads((run / "final.json").read_text())
    for group in ("To Bank", "@target"):
        assert 0 <= final[f"feat2vec/mpr/{group}"] <= 1 and 0 <= final[f"popularity/mpr/{group}"] <= 1
    assert final["rows_per_s"] > 0
    assert "feat2vec/mpr/To Bank" in capsys.readouterr().out
    assert main(["feat2vec", "--data", aml_csv, "--out", str(run), *TINY]) == 2  # never overwrites a run
    assert "a run already exists there" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--groups", "bank=To Bank+Nope;From Bank"], "column 'Nope' of group 'bank'"),
    (["--target", "Amount"], "--target 'Amount': not a feature group"),
    (["--eval-groups", "To Bank;zz"], "--eval-groups 'zz'"),
    (["--alpha1", "-1"], "alpha1 -1.0"),
    (["--negatives", "0"], "--negatives 0"),
])
def test_cli_feat2vec_bad_options(aml_csv, tmp_path, capsys, flags, message):
    assert main(["feat2vec", "--data", aml_csv, "--out", str(tmp_path / "r"), *TINY, *flags]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_experiment_feat2vec_report(aml_csv, tmp_path):
    out = tmp_path / "exp"
    assert main(["experiment", "feat2vec", "--data", aml_csv, "--eval-groups", "Receiving Currency;@target",
                 "--mcm-epochs", "1", "--supervised", "--out", str(out), *TINY]) == 0
    report = (out / "report.md").read_text()
    assert "Regenerate with: `relssl experiment feat2vec" in report
    assert "| ranker | Receiving Currency MPR % | @target MPR % |" in report
    mcm = next(line for line in report.splitlines() if line.startswith("| MCM head |"))
    assert mcm.count("±") == 1 and mcm.endswith("| – |")  # no MCM head for an entity id
    for ranker in ("popularity", "Feat2Vec", "Feat2Vec supervised"):
        assert next(line for line in report.splitlines() if line.startswith(f"| {ranker} |")).count("±") == 2
    assert "rows/s" in report


def test_feat2vec_bad_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [unclosed\n")
    assert main(["feat2vec", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"relssl: error: --config {bad}: malformed YAML") and "Traceback" not in err


def ratings():
    from tests.test_database_tasks import ratings_database

    return prepare_database(ratings_database(n=3000, history=False), "ratings")


def test_groups_from_other_tables_look_up_the_referenced_rows():
    prep = ratings()
    values = lookup_values(prep)
    db = prep.database
    assert list(values) == ["@user", "@movie", "movie.genre"]
    movie = db.links[db.seed_table, "movie -> movies"][1]
    assert torch.equal(values["@movie"], movie)
    genre = db.tables[db.names.index("movies")].tf.feat_dict[torch_frame.categorical][:, 0]
    assert torch.equal(values["movie.genre"], genre[movie])
    assert [g.name for g in parse_groups(None, prep)] == ["hour", "@user", "@movie"]


def test_a_referenced_rows_columns_go_with_its_id():
    prep = ratings()
    with pytest.raises(RelsslError, match="'movie.genre' .group 'g'. describes the row @movie references .group "
                                          "'m'.: ranking one would read the answer from the other"):
        parse_groups("u=@user;m=@movie;g=movie.genre", prep)
    groups = parse_groups("u=@user;m=@movie+movie.genre;hour", prep)
    assert groups[1].columns == ("@movie", "movie.genre")
    parse_groups("u=@user;g=movie.genre;hour", prep)  # the genre without the movie: nothing given away


def test_feat2vec_ranks_a_users_movies_from_the_movies_table():
    """Each user rates the movies of one genre: the movie group (its id and its genre, from the
    movies table) ranks well below popularity given the user."""
    trainer = Feat2VecTrainer(small(groups="user=@user;movie=@movie+movie.genre;hour", eval_groups="movie",
                                    lr=1e-2), ratings())
    for epoch in range(1, 9):
        trainer.train_epoch(epoch, progress=False)
    final = trainer.final()
    assert final["feat2vec/mpr/movie"] < 0.2 < 0.4 < final["popularity/mpr/movie"], final


def test_a_foreign_key_named_source_is_a_lookup_not_an_entity_id():
    from relssl.data.database import Database, ForeignKey, Table

    n = 300
    rng = np.random.default_rng(0)
    transfers = pd.DataFrame({"source": rng.integers(0, 20, n), "amount": rng.normal(size=n)})
    db = Database("bank", {
        "transfers": Table("transfers", transfers, {"amount": torch_frame.numerical},
                           foreign_keys=[ForeignKey(("source",), "accounts")], time=np.arange(n, dtype=np.int64)),
        "accounts": Table("accounts", pd.DataFrame({"id": np.arange(20), "kind": rng.choice(["a", "b"], 20)}),
                          {"kind": torch_frame.categorical}, primary_key=("id",)),
    }).check()
    prep = prepare_database(db, "transfers")
    groups = parse_groups(None, prep)
    assert [(g.name, g.entity) for g in groups] == [("amount", None), ("@source", None)]
    task = Feat2Vec(prep, groups, 8)
    assert task.lookup_names == ["@source"]
