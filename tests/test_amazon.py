"""The Amazon review reader: the real 5-core file, malformed lines, skipping, gzip, the built-in name."""
import gzip
import json

import numpy as np
import pytest
import torch_frame

from relssl.data.amazon import BadRowsWarning, read_amazon_reviews
from relssl.data.datasets import load_dataset
from relssl.errors import RelsslError


def review(i, **kw):
    rec = {"overall": float(1 + i % 5), "verified": bool(i % 2), "reviewTime": "09 4, 2015",
           "reviewerID": f"U{i % 7}", "asin": f"I{i % 3}", "style": {"Size:": " M", "Color:": f" c{i % 4}"},
           "reviewerName": "x", "reviewText": f"text {i % 5}", "summary": "ok", "unixReviewTime": 1441324800 + i}
    rec.update(kw)
    return json.dumps(rec)


def write(tmp_path, lines, name="r.json"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_the_real_5core_file(shared_data):
    path = shared_data / "amazon_fashion" / "AMAZON_FASHION_5.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = read_amazon_reviews(path)
    ev = data.events
    assert data.num_events == 3176
    assert data.num_entities == 406 + 31
    assert data.src.max() < 406 <= data.dst.min()  # reviewers first, then items
    assert (data.entity_keys["entity"] == "user").sum() == 406 and data.entity_keys["asin"].notna().sum() == 31
    assert ev["overall"].isna().sum() == 1
    assert ev["vote"].notna().sum() == 297 and ev["vote"].min() >= 2
    assert (ev["image_count"] > 0).sum() == 106
    assert ev["reviewText"].isna().sum() == 16
    assert data.col_stypes["reviewText"] == torch_frame.text_embedded
    assert data.col_stypes["style:Size"] == torch_frame.categorical
    assert ev["style:Size"].str.startswith(" ").sum() == 0  # values stripped
    assert "reviewerName" in ev and "reviewerName" not in data.col_stypes
    assert (np.diff(data.time) != 0).any() and data.time.min() > 1_000_000_000


def test_vote_thousands_separator_and_gzip(tmp_path):
    lines = [review(0, vote="1,234"), review(1), review(2, vote="7", image=["a", "b"])]
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    data = load_dataset(str(path))
    assert data.events["vote"].tolist()[0] == 1234 and np.isnan(data.events["vote"][1])
    assert data.events["image_count"].tolist() == [0, 0, 2]
    assert data.transforms["vote"] == "log1p"


def test_missing_unix_time_falls_back_to_review_time(tmp_path):
    rec = json.loads(review(0))
    del rec["unixReviewTime"]
    data = read_amazon_reviews(write(tmp_path, [json.dumps(rec), review(1)]))
    assert data.time[0] == 1441324800


@pytest.mark.parametrize("bad, why", [
    ('{"overall": 5.0, "reviewerID": "U1", asin}', "not valid JSON"),
    (review(9, overall="five"), "'overall'"),
    (review(9, vote="12x"), "'vote'"),
    (review(9, reviewerID=""), "'reviewerID'"),
    ("[1, 2]", "expected a JSON object"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, why):
    path = write(tmp_path, [review(0), "", review(1), bad, review(2)])
    with pytest.raises(RelsslError, match=rf"r\.json: line 4: .*{why}.*--skip-bad-rows"):
        read_amazon_reviews(path)


def test_skip_bad_rows_counts_what_it_skips(tmp_path):
    lines = [review(i) for i in range(10)]
    lines[2] = "{broken"
    lines[7] = review(7, vote="lots")
    path = write(tmp_path, lines)
    with pytest.raises(RelsslError, match="line 3: .*1 more bad line"):
        read_amazon_reviews(path)
    with pytest.warns(BadRowsWarning, match=r"skipped 2 malformed line\(s\) \(first: line 3"):
        data = read_amazon_reviews(path, skip_bad_rows=True)
    assert data.num_events == 8
    assert sorted(data.time - 1441324800) == [0, 1, 3, 4, 5, 6, 8, 9]


def test_empty_file_and_missing_file(tmp_path):
    with pytest.raises(RelsslError, match="no reviews"):
        read_amazon_reviews(write(tmp_path, [""]))
    with pytest.raises(RelsslError, match="file not found"):
        read_amazon_reviews(tmp_path / "nope.json")


def test_builtin_name_without_shared_data_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("RELSSL_SHARED_DATA", str(tmp_path))
    with pytest.raises(RelsslError, match=r"amazon_fashion/AMAZON_FASHION_5\.json does not exist.*RELSSL_SHARED_DATA"):
        load_dataset("amazon_fashion")


class FakeSentenceModel:
    """Deterministic unit vectors per text, so the CLI test needs no model."""

    def __init__(self):
        self.texts = 0

    def encode(self, texts, **kw):
        self.texts += len(texts)
        seeds = [sum(t.encode()) for t in texts]
        out = np.stack([np.random.default_rng(s).normal(size=8) for s in seeds]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.slow
def test_cli_pretrain_and_mask_experiment_on_a_few_hundred_reviews(shared_data, tmp_path, monkeypatch):
    from relssl.cli import main
    from relssl.data import text as text_mod

    real = shared_data / "amazon_fashion" / "AMAZON_FASHION_5.json"
    if not real.exists():
        pytest.skip(f"{real} not present")
    reviews = tmp_path / "reviews.json"
    reviews.write_text("\n".join(real.read_text().splitlines()[:300]) + "\n")
    model = FakeSentenceModel()
    monkeypatch.setattr(text_mod, "load_model", lambda name: model)
    monkeypatch.setenv("RELSSL_HOME", str(tmp_path / "home"))
    tiny = ["--channels", "16", "--heads", "2", "--row-layers", "1", "--gnn-layers", "1", "--fanouts", "4,2",
            "--batch-size", "64", "--train-rows-per-epoch", "128", "--eval-rows", "64", "--no-progress"]
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(reviews), "--objectives", "mcm,am,mv,lp", "--epochs", "1",
                 "--out", str(run), *tiny]) == 0
    final = json.loads((run / "final.json").read_text())
    for key in ("mcm/acc", "mcm/rmse", "mcm/emb_cos", "mcm/emb_r1", "am/emb_cos", "mv/acc", "lp/mrr"):
        assert np.isfinite(final[key]), key
    embedded = model.texts
    assert embedded > 0
    out = tmp_path / "masks"
    assert main(["experiment", "masks", "--data", str(reviews), "--objectives", "mcm", "--seeds", "1",
                 "--epochs", "1", "--out", str(out), *tiny]) == 0
    assert model.texts == embedded  # every later run read the text cache
    report = (out / "report.md").read_text()
    assert "MCM emb cos" in report and "MCM emb R@1" in report and "| bert |" in report


def test_style_keys_that_would_share_a_column_are_an_error(tmp_path):
    path = write(tmp_path, [review(0, style={"Size:": "M", "Size": "L"})])
    with pytest.raises(RelsslError, match="r.json: style keys .* 'style:Size'"):
        read_amazon_reviews(path)
