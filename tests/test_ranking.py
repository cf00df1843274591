import pytest
import torch

from relssl.metrics.ranking import pessimistic_rank, rank_metrics, rank_sums
from relssl.metrics.sums import add_sums, read_sums


def test_ties_count_against_the_positive():
    pos = torch.tensor([0.9, 0.5, 0.2])
    neg = torch.tensor([[0.1, 0.2, 0.3],  # all below: rank 1
                        [0.5, 0.6, 0.1],  # one tie, one above: rank 3
                        [0.2, 0.2, 0.2]])  # all tied: rank 4 (last)
    assert pessimistic_rank(pos, neg).tolist() == [1, 3, 4]


def test_masked_out_negatives_do_not_count():
    pos = torch.tensor([0.5, 0.5])
    neg = torch.tensor([[0.9, 0.8, 0.1], [0.9, 0.8, 0.7]])
    valid = torch.tensor([[False, True, True], [False, False, False]])
    assert pessimistic_rank(pos, neg, valid).tolist() == [2, 1]


def test_mrr_and_hits_from_summed_batches():
    ranks = [torch.tensor([1, 3]), torch.tensor([4, 12])]  # two batches, summed like an epoch
    sums = {}
    for r in ranks:
        add_sums(sums, rank_sums(r))
    m = rank_metrics(read_sums(sums))
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4 + 1 / 12) / 4)
    assert (m["hits@1"], m["hits@2"], m["hits@5"], m["hits@10"]) == (0.25, 0.25, 0.75, 0.75)


def test_random_score_references_by_hand():
    # one positive with 1 negative (rank 1 or 2), one with 3 (rank 1..4), one alone (rank 1)
    m = rank_metrics(read_sums(rank_sums(torch.tensor([2, 1, 1]), num_candidates=torch.tensor([2, 4, 1]))))
    assert m["mrr_ref"] == pytest.approx(((1 + 1 / 2) / 2 + (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4 + 1) / 3)
    assert m["hits@1_ref"] == pytest.approx((1 / 2 + 1 / 4 + 1) / 3)
    assert m["hits@2_ref"] == pytest.approx((1 + 2 / 4 + 1) / 3)
    assert m["hits@5_ref"] == pytest.approx(1.0)
    assert "mrr_ref" not in rank_metrics(read_sums(rank_sums(torch.tensor([1]))))


def test_sums_add_on_the_device_and_read_once_by_name():
    sums = {}
    for step in range(3):
        add_sums(sums, {"count": 2, "hits": torch.tensor(step), ("a/x", "a/y"): torch.tensor([1.5, float(step)]),
                        "big": torch.tensor(2.0 ** 24, dtype=torch.float32)})
    assert torch.is_tensor(sums["hits"]) and sums["count"] == 6
    got = read_sums(sums)
    assert got == {"count": 6.0, "hits": 3.0, "a/x": 4.5, "a/y": 3.0, "big": 3 * 2.0 ** 24 + 0}
    add_sums(sums, {"big": torch.tensor(1.0)})  # float64: one more is not lost to float32's rounding
    assert read_sums(sums)["big"] == 3 * 2.0 ** 24 + 1
    with pytest.raises(ValueError, match="2 names for 3 values"):
        read_sums({("p", "q"): torch.ones(3)})
