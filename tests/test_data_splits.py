"""Cold items (Figure 2) and training-user fractions (Figure 3)."""

from __future__ import annotations

import numpy as np
import pytest

from laser_repro.data.dataset import from_sequences
from laser_repro.data.splits import cold_items, sample_train_users


def _items(n):
    return [{"id": str(i), "title": f"t{i}", "brand": "b", "category": "c"} for i in range(n)]


def test_cold_items_bottom_35_percent_by_training_count():
    # training parts: user0 [0,0,1] (+ val 2, test 3); user1 [1,4] (+ 2, 3); user2 [0] (train only)
    ds = from_sequences("toy", "test", _items(6), ["a", "b", "c"], [[0, 0, 1, 2, 3], [1, 4, 2, 3], [0]])
    assert ds.train_item_counts().tolist() == [3, 2, 0, 0, 1, 0]  # val/test items do not count
    cold = cold_items(ds, 0.35)  # ceil(0.35 * 6) = 3 items: counts 0,0,0 (items 2, 3, 5)
    assert np.flatnonzero(cold).tolist() == [2, 3, 5]
    assert np.flatnonzero(cold_items(ds, 0.5)).tolist() == [2, 3, 5]
    assert np.flatnonzero(cold_items(ds, 0.6)).tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError):
        cold_items(ds, 1.5)


def test_train_user_fractions_are_seeded_and_nested():
    seqs = [[i % 7, (i + 1) % 7, (i + 2) % 7, (i + 3) % 7] for i in range(200)] + [[1]]
    ds = from_sequences("toy", "test", _items(7), [str(i) for i in range(201)], seqs)
    assert sample_train_users(ds, 0.0, seed=0).size == 0
    full = sample_train_users(ds, 1.0, seed=0)
    assert full.tolist() == list(range(200))  # the 1-item user has no training pair
    a5, a10 = sample_train_users(ds, 0.05, 0), sample_train_users(ds, 0.10, 0)
    assert a5.size == 10 and a10.size == 20 and set(a5) <= set(a10)
    assert np.array_equal(a5, sample_train_users(ds, 0.05, 0))
    assert not np.array_equal(a10, sample_train_users(ds, 0.10, 1))


def test_a_training_only_user_has_no_target_to_hand_out():
    """history_and_target and targets returned the NEXT user's first item as a training-only user's target."""
    items = [{"id": str(i), "title": f"t{i}", "brand": "b", "category": "c"} for i in range(6)]
    ds = from_sequences("d", "test", items, ["a", "b", "c"], [[0, 1], [2, 3, 4, 5], [1, 2, 3]])
    assert list(ds.eval_users("test")) == [1, 2]  # "a" has 2 items: training only
    hist, target = ds.history_and_target(1, "test")
    assert list(hist) == [2, 3, 4] and target == 5
    assert ds.history_and_target(2, "valid")[1] == 2 and list(ds.targets("valid", [1, 2])) == [4, 2]
    for split in ("valid", "test"):
        with pytest.raises(ValueError, match=f"d: user 0 has no {split} target"):
            ds.history_and_target(0, split)
        with pytest.raises(ValueError, match=f"d: user 0 has no {split} target"):
            ds.targets(split, [1, 0])
    with pytest.raises(ValueError, match="split must be 'valid' or 'test'"):
        ds.history_and_target(1, "train")
