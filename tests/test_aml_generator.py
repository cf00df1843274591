"""The synthetic generator writes what the real AMLworld files look like, patterns included, with
laundering a model can learn: persistent launderers, patterns over the whole period, presets that
match IBM's published statistics."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relssl.cli import main
from relssl.data.aml_generator import (
    CURRENCIES, FORMATS, GENERATOR_VERSION, PATTERN_TYPES, PRESETS, generate_aml, read_aml_patterns, write_aml,
)
from relssl.data.datasets import SYNTHETIC_AML_ROWS, synthetic_aml_path
from relssl.data.ibm_aml import HEADER, read_ibm_aml
from relssl.data.splits import TEST, temporal_split
from relssl.errors import RelsslError

REAL_ROWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ibm_aml_format" / "REAL_ROWS_HI-Small_Trans.csv"
ROWS = 100_000  # at the default 1 in 500, room for all eight pattern types and ~40 test-split positives
DEFAULT_RATE = PRESETS["default"].laundering_rate


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    return write_aml(tmp_path_factory.mktemp("aml"), rows=ROWS, seed=3)


@pytest.fixture(scope="module")
def data(written):
    return read_ibm_aml(written[0])


@pytest.fixture(scope="module")
def default():
    """The bundled default's rows (seed 0, no overrides), as a frame and its pattern log."""
    return generate_aml(seed=0)


def seconds(df: pd.DataFrame) -> np.ndarray:
    return df["Timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)


def accounts(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(bank, account) keys of payer and payee."""
    return (df["From Bank"] + "/" + df["Account"]).to_numpy(), (df["To Bank"] + "/" + df["Account.1"]).to_numpy()


def test_file_names_and_exact_header(written):
    trans, patterns = written
    assert trans.name == "Synthetic_Trans.csv" and patterns.name == "Synthetic_Patterns.txt"
    first = trans.read_bytes()[: len(HEADER) + 1]
    assert first == (HEADER + "\n").encode()


@pytest.mark.skipif(not REAL_ROWS.is_file(), reason="../shared/data (real HI-Small rows) is absent")
def test_the_header_is_the_real_files(written):
    assert written[0].read_bytes().split(b"\n")[0] == REAL_ROWS.read_bytes().split(b"\n")[0]


def test_round_trip_through_the_reader(written, data):
    df, _ = generate_aml(ROWS, seed=3)
    assert data.num_events == ROWS
    for column in ("From Bank", "Account", "To Bank", "Account.1", "Payment Format", "Receiving Currency"):
        assert data.events[column].tolist() == df[column].tolist()
    assert np.array_equal(data.events["Amount Paid"].to_numpy(), df["Amount Paid"].to_numpy())
    assert np.array_equal(data.events["Timestamp"].to_numpy(), df["Timestamp"].to_numpy())
    assert np.all(np.diff(data.time) >= 0) and np.all(data.time % 60 == 0)
    assert 14 * 86400 <= data.time.max() - data.time.min() <= 21 * 86400


def test_text_format(written):
    lines = written[0].read_text().split("\n")
    assert lines[-1] == "" and "\r" not in lines[1] and '"' not in "".join(lines[1:1000])
    fields = [line.split(",") for line in lines[1:1000]]
    assert all(len(f) == 11 for f in fields)
    assert all(len(f[0]) == 16 and f[0][4] == "/" for f in fields)
    assert all(len(f[5].split(".")[1]) == 2 and len(f[7].split(".")[1]) == 2 for f in fields)
    assert all(len(f[2]) == 9 and int(f[2], 16) >= 0 for f in fields)


def test_banks_are_zero_padded_strings(data):
    banks = data.entity_keys["bank"]
    assert banks.str.fullmatch(r"\d{3,}").all()
    assert banks.str.startswith("0").mean() > 0.3
    assert banks.str.len().nunique() >= 3
    assert banks.nunique() >= 100


def test_laundering_rate_and_patterns(written, data):
    labels = data.events["Is Laundering"].to_numpy()
    assert set(np.unique(labels)) == {0, 1}
    assert labels.sum() == round(ROWS * DEFAULT_RATE)

    blocks = read_aml_patterns(written[1])
    assert {kind for kind, _ in blocks} == set(PATTERN_TYPES)
    text = written[1].read_text()
    assert text.startswith("BEGIN LAUNDERING ATTEMPT - ") and text.endswith("\n\n")
    assert "FAN-OUT:  Max " in text and "-degree Fan-Out\n" in text and " hops\n" in text

    laundering_lines = {line for line in written[0].read_text().split("\n") if line.endswith(",1")}
    pattern_lines = [
        line for line in text.split("\n") if line and not line.startswith(("BEGIN", "END"))
    ]
    assert set(pattern_lines) <= laundering_lines
    assert sum(len(rows) for _, rows in blocks) == len(pattern_lines)
    assert all((rows["Is Laundering"] == 1).all() for _, rows in blocks)
    outside = int(labels.sum()) - len(pattern_lines)
    assert 0.3 * labels.sum() <= outside <= 0.45 * labels.sum()  # HI-Small: 38 % outside its pattern blocks


def test_pattern_shapes(written):
    for kind, rows in read_aml_patterns(written[1]):
        src = rows["From Bank"] + "/" + rows["Account"]
        dst = rows["To Bank"] + "/" + rows["Account.1"]
        if kind == "FAN-OUT":
            assert src.nunique() == 1 and dst.nunique() == len(rows)
        elif kind == "FAN-IN":
            assert dst.nunique() == 1 and src.nunique() == len(rows)
        elif kind == "CYCLE":
            assert sorted(src) == sorted(dst)
            assert rows["Timestamp"].is_monotonic_increasing


def test_log_matches_frame():
    df, log = generate_aml(20_000, seed=1, laundering_rate=0.01)
    assert len(df) == 20_000 and list(df.columns)[2:5] == ["Account", "To Bank", "Account.1"]
    assert df["Timestamp"].is_monotonic_increasing
    assert (df["Is Laundering"].to_numpy()[log.rows] == 1).all()
    assert len(log.offsets) == len(log) + 1 and log.offsets[-1] == len(log.rows)
    assert set(log.kinds) == set(PATTERN_TYPES)


def test_reinvestment_is_self_transfer_and_bitcoin_pays_bitcoin(data):
    ev = data.events
    reinvest = (ev["Payment Format"] == "Reinvestment").to_numpy()
    assert reinvest.mean() > 0.05
    assert (data.src[reinvest] == data.dst[reinvest]).all()
    assert (data.src[~reinvest] != data.dst[~reinvest]).all()
    bitcoin = ev["Payment Format"] == "Bitcoin"
    assert (ev.loc[bitcoin, "Payment Currency"] == "Bitcoin").all()
    assert ev["Payment Currency"].nunique() == 15
    same = ev["Payment Currency"] == ev["Receiving Currency"]
    assert 0.9 < same.mean() < 1.0
    assert (ev.loc[same, "Amount Paid"] == ev.loc[same, "Amount Received"]).all()


def test_heavy_tailed_degrees(data):
    out_degree = np.bincount(data.src, minlength=data.num_entities)
    in_degree = np.bincount(data.dst, minlength=data.num_entities)
    assert out_degree.max() > 20 * out_degree.mean()
    assert in_degree.max() > 20 * in_degree.mean()
    assert 5 <= data.num_events / data.num_entities <= 15


def test_every_split_gets_its_share_of_laundering(default, data):
    """Patterns start over the whole period: each 60/20/20 temporal split's laundering rate is
    within a factor 1.5 of the overall rate, and the default's test split has >= 100 positives."""
    df, _ = default
    for time, labels in ((data.time, data.events["Is Laundering"].to_numpy()),
                         (seconds(df), df["Is Laundering"].to_numpy())):
        split = temporal_split(time, len(labels))
        rates = np.array([labels[split == s].mean() for s in range(3)]) / labels.mean()
        assert (rates > 1 / 1.5).all() and (rates < 1.5).all(), rates
    assert len(df) == SYNTHETIC_AML_ROWS and labels[split == TEST].sum() >= 100


def test_launderers_are_a_persistent_population(default):
    """Accounts in three or more schemes launder in several splits and much of what they do is
    laundering (the old generator's uniformly drawn pattern accounts: about 4 %)."""
    df, log = default
    labels = df["Is Laundering"].to_numpy()
    split = temporal_split(seconds(df), len(df))
    src, dst = accounts(df)
    instance = np.repeat(np.arange(len(log)), np.diff(log.offsets))
    schemes = pd.Series(np.concatenate([instance, instance])).groupby(
        np.concatenate([src[log.rows], dst[log.rows]])).nunique()
    launderers = schemes.index[schemes >= 3]
    assert len(launderers) >= 30
    touches = pd.DataFrame({"account": np.concatenate([src, dst]), "label": np.tile(labels, 2),
                            "split": np.tile(split, 2)})
    touches = touches[touches["account"].isin(launderers)]
    assert 0.3 <= touches["label"].mean() <= 0.8  # ordinary payments too
    splits = touches[touches["label"] == 1].groupby("account")["split"].nunique()
    assert (splits > 1).mean() >= 0.8


def test_laundering_differs_from_ordinary_traffic(default):
    df, log = default
    laundering = df["Is Laundering"].to_numpy() == 1
    ach = (df["Payment Format"] == "ACH").to_numpy()
    cross = (df["Payment Currency"] != df["Receiving Currency"]).to_numpy()
    assert ach[laundering].mean() > 0.5 > 0.2 > ach[~laundering].mean()
    assert cross[laundering].mean() > 1.5 * cross[~laundering].mean()
    time = seconds(df)
    hops = [np.diff(time[log.rows[lo:hi]]) for kind, lo, hi in zip(log.kinds, log.offsets[:-1], log.offsets[1:])
            if kind == "CYCLE"]
    assert np.median(np.concatenate(hops)) <= 6 * 3600  # hours between hops, not days


def test_ordinary_regularities(default):
    """Salaries (one payer, many payees, fixed amounts, ACH or Wire, repeated), merchants paid by
    many small Credit Card payments, bills repeated at the same amount."""
    df, _ = default
    ordinary = df[df["Is Laundering"] == 0]
    src, dst = accounts(ordinary)
    pairs = pd.DataFrame({"src": src, "dst": dst, "amount": ordinary["Amount Paid"].to_numpy(),
                          "format": ordinary["Payment Format"].to_numpy()})
    repeated = pairs[pairs.duplicated(["src", "dst", "amount"], keep=False) & (pairs["src"] != pairs["dst"])]
    salaries = repeated[repeated["format"].isin(["ACH", "Wire"])]
    assert salaries.groupby("src")["dst"].nunique().max() >= 20
    cards = pairs[pairs["format"] == "Credit Card"]
    busiest = cards.groupby("dst")["amount"].agg(["size", "median"]).sort_values("size").iloc[-1]
    assert busiest["size"] >= 500 and busiest["median"] < 200
    assert (repeated["format"] == "Cheque").sum() > 100  # bills paid by cheque, same amount each time


@pytest.mark.parametrize("preset", ["hi-small", "li-small"])
def test_presets_match_ibm_headline_statistics(preset):
    """At any size: laundering rate, rows per account, payment-format and currency mix."""
    spec = PRESETS[preset]
    df, _ = generate_aml(60_000, seed=2, preset=preset)
    labels = df["Is Laundering"].to_numpy()
    assert abs(labels.sum() - 60_000 * spec.laundering_rate) <= 1
    src, dst = accounts(df)
    assert len(df) / len(np.unique(np.concatenate([src, dst]))) == pytest.approx(spec.rows_per_account, rel=0.01)
    formats = df["Payment Format"].value_counts(normalize=True).reindex(FORMATS, fill_value=0).to_numpy()
    assert np.abs(formats - spec.format_share).max() <= 0.002
    currencies = df["Payment Currency"].value_counts(normalize=True).reindex(CURRENCIES, fill_value=0).to_numpy()
    assert np.abs(currencies - spec.currency_share).max() <= 0.003
    cross = (df["Payment Currency"] != df["Receiving Currency"]).mean()
    assert cross == pytest.approx(spec.cross_currency_share, abs=0.001)


def test_presets_published_figures():
    assert PRESETS["hi-small"].rows == 5_078_345 and round(1 / PRESETS["hi-small"].laundering_rate) == 981
    assert PRESETS["li-small"].rows == 6_924_049 and round(1 / PRESETS["li-small"].laundering_rate) == 1942
    assert PRESETS["hi-small"].rows_per_account == pytest.approx(5_078_345 / 515_080)
    assert PRESETS["li-small"].rows_per_account == pytest.approx(6_924_049 / 705_907)
    for spec in PRESETS.values():
        assert spec.format_share.sum() == pytest.approx(1) and spec.currency_share.sum() == pytest.approx(1)


def test_deterministic_per_seed(tmp_path):
    a = write_aml(tmp_path / "a", rows=20_000, seed=5, laundering_rate=0.01)
    b = write_aml(tmp_path / "b", rows=20_000, seed=5, laundering_rate=0.01)
    c = write_aml(tmp_path / "c", rows=20_000, seed=6, laundering_rate=0.01)
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes() and a[1].read_bytes() != c[1].read_bytes()
    d = write_aml(tmp_path / "d", rows=20_000, seed=5, preset="li-small")
    e = write_aml(tmp_path / "e", rows=20_000, seed=5, preset="li-small")
    assert d[0].read_bytes() == e[0].read_bytes()


@pytest.mark.slow
def test_default_is_the_generate_command_and_never_an_old_file(tmp_path, monkeypatch, capsys):
    """`relssl generate aml --seed 0` without --rows writes the bundled default byte for byte; the
    default lives in a folder named by the generator's version and source, so an old file is ignored."""
    monkeypatch.setenv("RELSSL_HOME", str(tmp_path / "home"))
    stale = tmp_path / "home" / "synthetic_aml" / "Synthetic_Trans.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text(HEADER + "\n")
    path = synthetic_aml_path()
    assert path.parent.name.startswith(f"synthetic_aml_v{GENERATOR_VERSION}_") and path != stale
    assert main(["generate", "aml", "--seed", "0", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "Synthetic_Trans.csv").read_bytes() == path.read_bytes()
    patterns = (path.parent / "Synthetic_Patterns.txt").read_bytes()
    assert (tmp_path / "cli" / "Synthetic_Patterns.txt").read_bytes() == patterns
    assert "wrote" in capsys.readouterr().out


def test_cli_preset_overrides_and_bad_values(tmp_path, capsys):
    out = tmp_path / "hi"
    assert main(["generate", "aml", "--preset", "hi-small", "--rows", "5000", "--laundering-rate", "0.01",
                 "--out", str(out)]) == 0
    labels = read_ibm_aml(out / "Synthetic_Trans.csv").events["Is Laundering"]
    assert len(labels) == 5000 and labels.sum() == 50
    capsys.readouterr()
    for bad in (["--rows", "0"], ["--rows", "ten"], ["--laundering-rate", "1"], ["--laundering-rate", "nan"],
                ["--preset", "HI-Small"], ["--seed", "-1"]):
        assert main(["generate", "aml", *bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"relssl: error: {bad[0]} ")
    assert not (tmp_path / "bad").exists()


def test_no_laundering_and_bad_arguments(tmp_path):
    df, log = generate_aml(1000, laundering_rate=0.0)
    assert df["Is Laundering"].sum() == 0 and len(log) == 0
    _, patterns = write_aml(tmp_path, rows=1000, laundering_rate=0.0)
    assert read_aml_patterns(patterns) == []
    for kwargs, message in (({"rows": 0}, "rows 0: expected a positive integer"),
                            ({"laundering_rate": 1.0}, "laundering rate 1.0: expected a fraction in [0, 1)"),
                            ({"preset": "hi"}, "preset 'hi': expected one of default, hi-small, li-small")):
        with pytest.raises(RelsslError, match=re.escape(message)):
            generate_aml(**kwargs)
    with pytest.raises(RelsslError, match="start"):
        generate_aml(100, start="2022-09-01")


def test_patterns_reader_rejects_rows_outside_blocks(tmp_path):
    path = tmp_path / "X_Patterns.txt"
    path.write_text("2022/09/01 00:06,021174,800737690,012,80011F990,2848.96,Euro,2848.96,Euro,ACH,1\n")
    with pytest.raises(RelsslError, match="X_Patterns.txt"):
        read_aml_patterns(path)
