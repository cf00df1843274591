"""The built-in `ethereum-tedge` dataset: the T-EDGE phishing network read from ../shared/data."""
import numpy as np
import pytest

from relssl.data.datasets import load_dataset
from relssl.data.prepare import prepare
from relssl.data.splits import TEST, TRAIN, VAL
from relssl.eval.tasks import labelled_sets, parse_task


@pytest.mark.slow
def test_tedge_loads_the_real_files_with_their_node_split(shared_data):
    data = load_dataset("ethereum-tedge")
    assert (data.num_entities, data.num_events) == (86_622, 106_083)
    assert data.has_graph and data.time is not None and data.entities is not None
    labelled = data.entities["label"].notna()
    assert labelled.sum() == 890 and data.entities.loc[labelled, "label"].sum() == 445
    assert set(data.col_stypes) == {"amount", "n_transactions", "timestamp"}
    # every edge's endpoints are node ids of the node file (ids are 1-based integers)
    assert data.entity_keys["id"].min() == 1 and len(np.unique(data.src)) > 1000

    prep = prepare(data)
    spec = parse_task(None, data)
    assert spec.name == "node:label"
    sets = labelled_sets(prep, spec, seed=0)
    test = set(np.flatnonzero((data.entities["is_test"] & labelled).to_numpy()))
    train_part = set(np.flatnonzero((data.entities["is_train"] & labelled).to_numpy()))
    assert set(sets.ids[TEST].tolist()) == test and len(test) == 267
    assert set(sets.ids[TRAIN].tolist()) | set(sets.ids[VAL].tolist()) == train_part
    assert sets.positive == "1.0"  # phishing
