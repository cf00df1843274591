"""Preprocessed-data cache (hit, invalidation, memory maps) and out-of-core AML ingestion."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from relssl.data.aml_generator import write_aml
from relssl.data.cache import load_prepared, read_entry, write_entry
from relssl.data.ibm_aml import read_ibm_aml
from relssl.data.ingest import _stream, ingest_ibm_aml
from relssl.data.prepare import prepare
from relssl.errors import RelsslError


@pytest.fixture(scope="module")
def aml(tmp_path_factory):
    trans, _ = write_aml(tmp_path_factory.mktemp("aml"), rows=3000, seed=1, name="Small")
    return trans


def assert_same_prepared(a, b):
    assert np.array_equal(np.asarray(a.split), np.asarray(b.split))
    for name in ("src", "dst", "time"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.num_entities == b.num_entities
    assert a.events.tf.col_names_dict == b.events.tf.col_names_dict
    for stype in a.events.tf.stypes:
        x, y = a.events.tf.feat_dict[stype], b.events.tf.feat_dict[stype]
        assert torch.equal(x, y) or (x.is_floating_point() and torch.allclose(x, y, rtol=0, atol=0, equal_nan=True)), stype
    assert a.events.columns == b.events.columns
    assert a.events.col_stats.keys() == b.events.col_stats.keys()
    for col, stats in a.events.col_stats.items():
        for stat, value in stats.items():
            other = b.events.col_stats[col][stat]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (col, stat)
            else:
                assert [*value] == [*other] if isinstance(value, (list, tuple)) else value == other, (col, stat)


def test_small_chunks_equal_one_shot_ingestion(aml, tmp_path):
    """~25 rows per chunk: ids, split, vocabularies, statistics and tensors equal the in-memory path."""
    arrays, meta = ingest_ibm_aml(aml, tmp_path, (0.5, 0.3, 0.2), max_categories=8, chunk_bytes=2048)
    assert len(list(tmp_path.glob("staged*"))) == 0
    write_entry(tmp_path, arrays, meta)
    chunked = read_entry(tmp_path)
    one_shot = prepare(read_ibm_aml(aml), (0.5, 0.3, 0.2), max_categories=8)
    assert_same_prepared(one_shot, chunked)
    bank = next(c for c in chunked.events.columns if c.name == "From Bank")
    assert bank.num_categories == 8  # the vocabulary cap applies to the chunked path too
    assert sum(1 for _ in _stream(aml, 2048)) > 50  # really many chunks


def test_cache_hit_loads_memory_maps_equal_to_the_first_run(aml, tmp_path):
    first, hit = load_prepared(str(aml), cache_dir=tmp_path)
    assert not hit
    second, hit = load_prepared(str(aml), cache_dir=tmp_path)
    assert hit
    assert_same_prepared(first, second)
    assert isinstance(second.split, np.memmap)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1
    # a different split is a different entry
    _, hit = load_prepared(str(aml), fractions=(0.7, 0.2, 0.1), cache_dir=tmp_path)
    assert not hit


def test_changed_file_invalidates_the_entry(aml, tmp_path):
    copy = tmp_path / "Copy_Trans.csv"
    copy.write_bytes(aml.read_bytes())
    cache = tmp_path / "cache"
    before, _ = load_prepared(str(copy), cache_dir=cache)
    # same length, one amount changed, mtime restored: the content hash still sees it
    text = copy.read_text()
    stat = copy.stat()
    line = text.splitlines()[5]
    fields = line.split(",")
    fields[5] = "9" * len(fields[5].split(".")[0]) + fields[5][len(fields[5].split(".")[0]):]
    copy.write_text(text.replace(line, ",".join(fields), 1))
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    after, hit = load_prepared(str(copy), cache_dir=cache)
    assert not hit
    assert not torch.equal(before.events.tf.feat_dict[after.events.tf.stypes[0]],
                           after.events.tf.feat_dict[after.events.tf.stypes[0]])


SCHEMA = """
events:
  path: events.csv
  columns: {a: numerical, b: categorical, t: {stype: timestamp, format: "%Y/%m/%d %H:%M"}}
  time: t
"""


def test_changed_schema_invalidates_and_other_sources_are_cached(tmp_path):
    (tmp_path / "events.csv").write_text("a,b,t\n1,x,2022/09/01 00:20\n2,y,2022/09/01 00:21\n3,x,2022/09/01 00:22\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA)
    cache = tmp_path / "cache"
    prep, hit = load_prepared(str(schema), cache_dir=cache)
    assert not hit and prep.events.tf.feat_dict[prep.events.tf.stypes[0]].shape == (3, 1)
    assert load_prepared(str(schema), cache_dir=cache)[1]
    schema.write_text(SCHEMA.replace("a: numerical", "a: categorical"))
    prep, hit = load_prepared(str(schema), cache_dir=cache)
    assert not hit and [c.stype.value for c in prep.events.columns] == ["categorical", "categorical", "timestamp"]


def test_bad_input_is_named_before_anything_is_cached(tmp_path):
    bad = tmp_path / "Bad_Trans.csv"
    bad.write_text("Timestamp,From Bank\n")
    with pytest.raises(RelsslError, match="header does not match"):
        load_prepared(str(bad), cache_dir=tmp_path / "cache")
    good_header = tmp_path / "Bad2_Trans.csv"
    good_header.write_text(read_ibm_aml.__globals__["HEADER"] + "\n2022/09/01 00:20,010,A,001,B,oops,US Dollar,1,"
                           "US Dollar,Cheque,0\n")
    with pytest.raises(RelsslError, match="Amount Received"):
        load_prepared(str(good_header), cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["digests.json"]


def test_only_sources_without_text_or_vectors_are_cached(tmp_path):
    from relssl.data.cache import cacheable

    schema = tmp_path / "reviews.yaml"
    schema.write_text("name: r\nevents:\n  path: r.csv\n  columns:\n    stars: numerical\n    body: {stype: text}\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: p\nevents:\n  path: p.csv\n  columns:\n    stars: numerical\n")
    assert not cacheable("amazon_fashion") and not cacheable("reviews.json.gz") and not cacheable(str(schema))
    assert cacheable("synthetic-aml") and cacheable("amlsim") and cacheable(str(plain)) and cacheable("x_Trans.csv")
    assert cacheable("portal") and cacheable("flights") and not cacheable("bakeoff")  # bakeoff has text columns


def test_a_database_is_cached_with_its_tables_and_views(tmp_path):
    """Every table's encoding, times, key links, labels kept as history and each pretext table's
    split come back from the memory maps as prepared; --table and --tables are part of the key."""
    from relssl.data.prepare import prepare_database
    from relssl.data.schema import load_database
    from tests.test_database_tasks import SCHEMA, denormalised_sqlite

    denormalised_sqlite(tmp_path / "films.db")
    schema = tmp_path / "films.yaml"
    schema.write_text(SCHEMA)
    cache = tmp_path / "cache"
    first = prepare_database(load_database(schema), "ratings", pretext=["ratings", "movies"])
    assert not load_prepared(str(schema), cache_dir=cache, table="ratings", tables=["ratings", "movies"])[1]
    again, hit = load_prepared(str(schema), cache_dir=cache, table="ratings", tables=["ratings", "movies"])
    assert hit and again.data is None and set(again.views) == {"ratings", "movies"}
    a, b = first.database, again.database
    assert (a.names, a.num_rows, a.seed_table, a.cuts, a.pretext) == (b.names, b.num_rows, b.seed_table, b.cuts, b.pretext)
    for x, y in [*zip(a.tables, b.tables), *zip(a.history, b.history)]:
        assert (x is None) == (y is None)
        if x is not None:
            assert all(torch.equal(x.tf.feat_dict[s], y.tf.feat_dict[s]) for s in x.tf.stypes) and x.columns == y.columns
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(a.times, b.times))
    assert a.links.keys() == b.links.keys() and all(torch.equal(a.links[k][1], b.links[k][1]) for k in a.links)
    for name in ("ratings", "movies"):
        assert np.array_equal(first.views[name].split, np.asarray(again.views[name].split))
    assert again.views["movies"].database.seed_table == first.views["movies"].database.seed_table
    assert not load_prepared(str(schema), cache_dir=cache, table="ratings")[1]  # another --tables: another entry


def overwrite_last_index(path) -> None:
    """8 bytes written inside an index array, its size kept: an account id far beyond the table
    (read, it made the run allocate petabytes)."""
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write((2**60).to_bytes(8, "little"))


@pytest.mark.parametrize("damage,problem", [
    (lambda e: (e / "manifest.json").unlink(), "no manifest.json"),
    (lambda e: (e / "manifest.json").write_text((e / "manifest.json").read_text()[:200]), "manifest.json is unreadable"),
    (lambda e: (e / "manifest.json").write_text((e / "manifest.json").read_text().replace('"seed": 0', '"seed": 7', 1)),
     "does not match its checksum"),
    (lambda e: (e / "split.npy").unlink(), "array split.npy is missing or unreadable"),
    (lambda e: np.save(e / "split.npy", np.zeros(5, dtype=np.int8)), "array split.npy is int8 [5], the manifest says"),
    (lambda e: overwrite_last_index(e / "dst.npy"), "array dst.npy does not match its SHA-256"),
])
def test_a_damaged_entry_is_rebuilt_with_a_warning(aml, tmp_path, damage, problem):
    load_prepared(str(aml), cache_dir=tmp_path)
    entry = next(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    damage(entry)
    with pytest.warns(UserWarning, match=__import__("re").escape(problem)):
        again, hit = load_prepared(str(aml), cache_dir=tmp_path)
    assert not hit
    assert_same_prepared(prepare(read_ibm_aml(aml)), again)  # the in-memory path (a map of the damaged file moved)
    _, hit = load_prepared(str(aml), cache_dir=tmp_path)
    assert hit and not [p for p in tmp_path.iterdir() if p.name.endswith("-stale")]


def test_an_array_changed_after_its_entry_was_verified_is_found(aml, tmp_path):
    """A hit re-hashes only arrays whose stat changed since the digest memo hashed them: a write
    into one changes its ctime, even with its mtime set back."""
    load_prepared(str(aml), cache_dir=tmp_path)
    assert load_prepared(str(aml), cache_dir=tmp_path)[1]  # verified once: the memo holds the arrays
    entry = next(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    stat = (entry / "src.npy").stat()
    overwrite_last_index(entry / "src.npy")
    os.utime(entry / "src.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.warns(UserWarning, match="array src.npy does not match its SHA-256"):
        again, hit = load_prepared(str(aml), cache_dir=tmp_path)
    assert not hit and int(again.src.max()) < again.num_entities
    assert_same_prepared(prepare(read_ibm_aml(aml)), again)


def test_an_edit_with_its_mtime_restored_is_not_served_stale(aml, tmp_path):
    import os

    copy = tmp_path / "Edit_Trans.csv"
    copy.write_bytes(aml.read_bytes())
    first, _ = load_prepared(str(copy), cache_dir=tmp_path / "cache")
    stat = copy.stat()
    text = copy.read_text()
    copy.write_text(text.replace(",0\n", ",1\n", 5))  # same size: five labels flipped
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert copy.stat().st_size == stat.st_size and copy.stat().st_mtime_ns == stat.st_mtime_ns
    _, hit = load_prepared(str(copy), cache_dir=tmp_path / "cache")
    assert not hit


@pytest.fixture(scope="module")
def bad_aml(aml, tmp_path_factory):
    """The 3,000 rows with four bad amounts: inf, nan, an overflowing 1e999 and -inf."""
    lines = aml.read_text().splitlines()
    for line, column, value in ((100, 7, "inf"), (1500, 5, "nan"), (2000, 5, "1e999"), (2001, 7, "-inf")):
        cells = lines[line].split(",")
        cells[column] = value
        lines[line] = ",".join(cells)
    path = tmp_path_factory.mktemp("bad") / "Bad_Trans.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("policy", ["drop", "missing"])
def test_bad_amounts_dropped_or_missing_alike_in_memory_and_in_chunks(bad_aml, tmp_path, policy):
    with pytest.warns(UserWarning, match=f"Bad_Trans.csv: 4 row\\(s\\) with a bad amount "
                                         f"{'dropped' if policy == 'drop' else 'read as missing'}"):
        data = read_ibm_aml(bad_aml, policy)
    assert len(data.events) == (2996 if policy == "drop" else 3000)
    amounts = data.events[["Amount Received", "Amount Paid"]].to_numpy()
    assert np.isfinite(amounts).all() if policy == "drop" else np.isnan(amounts).sum() == 4
    with pytest.warns(UserWarning, match="4 row"):
        arrays, meta = ingest_ibm_aml(bad_aml, tmp_path, (0.5, 0.3, 0.2), max_categories=8, chunk_bytes=2048,
                                      on_bad_values=policy)
    write_entry(tmp_path, arrays, meta)
    assert_same_prepared(prepare(data, (0.5, 0.3, 0.2), max_categories=8), read_entry(tmp_path))


def test_a_bad_amount_in_a_later_chunk_names_its_row_in_the_file(bad_aml, tmp_path):
    with pytest.raises(RelsslError, match=r"Bad_Trans.csv: column 'Amount Paid' holds inf in data row 100: not a "
                                          r"finite number; or pass --on-bad-values drop or missing"):
        ingest_ibm_aml(bad_aml, tmp_path, chunk_bytes=2048)
    skipped = bad_aml.with_name("Later_Trans.csv")
    lines = bad_aml.read_text().splitlines()
    skipped.write_text("\n".join(lines[:100] + [lines[99]] + lines[101:]) + "\n")  # row 100 clean again
    with pytest.raises(RelsslError, match=r"column 'Amount Received' holds nan in data row 1500: not a number"):
        ingest_ibm_aml(skipped, tmp_path / "b", chunk_bytes=2048)
    with pytest.raises(RelsslError, match=r"holds nan in data row 1500"):
        read_ibm_aml(skipped)
