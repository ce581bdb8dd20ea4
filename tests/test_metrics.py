"""Rank metrics (paper §5.1) pinned on hand-computed cases."""

import math

import numpy as np
import pytest

from laser_repro.eval.metrics import aggregate, mrr_per_user, ndcg_per_user, per_user_metrics, recall_per_user

RANKS = np.array([0, 1, 9, 10, 99])  # 0 = target on top


def test_recall_is_hit_at_k():
    assert recall_per_user(RANKS, 10).tolist() == [1, 1, 1, 0, 0]
    assert recall_per_user(RANKS, 1).tolist() == [1, 0, 0, 0, 0]


def test_ndcg_hand_values():
    expected = [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0]
    np.testing.assert_allclose(ndcg_per_user(RANKS, 10), expected, rtol=0, atol=1e-15)
    assert ndcg_per_user(np.array([1]), 10)[0] == pytest.approx(0.6309297535714575)


def test_mrr_full_list_and_cut_off():
    np.testing.assert_allclose(mrr_per_user(RANKS), [1.0, 0.5, 0.1, 1 / 11, 0.01])
    np.testing.assert_allclose(mrr_per_user(RANKS, 10), [1.0, 0.5, 0.1, 0.0, 0.0])


def test_aggregate_means_unrounded():
    m = aggregate(RANKS)
    assert m["n"] == 5
    assert m["recall@10"] == pytest.approx(0.6)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.1 + 1 / 11 + 0.01) / 5)
    assert m["mrr@10"] == pytest.approx(1.6 / 5)
    # full-list MRR is never below MRR@10
    assert m["mrr"] > m["mrr@10"]


def test_several_cutoffs_and_empty():
    per = per_user_metrics(RANKS, ks=(1, 5))
    assert set(per) == {"recall@1", "ndcg@1", "mrr@1", "recall@5", "ndcg@5", "mrr@5", "mrr"}
    assert per["recall@5"].tolist() == [1, 1, 0, 0, 0]
    empty = aggregate(np.array([], dtype=np.int64))
    assert empty["n"] == 0 and math.isnan(empty["recall@10"])
