"""The shared full-ranking evaluator: hand-computed ranks, tie policies, brute force, subsets."""

import math

import numpy as np
import pytest
import torch

from laser_repro.eval.evaluator import evaluate, load_ranks, save_ranks, target_ranks

SCORES = torch.tensor(
    [
        [0.1, 0.5, 0.5, 0.3, 0.5],  # target 1 ties with items 2 and 4
        [0.1, 0.5, 0.5, 0.3, 0.5],  # target 3: items 1, 2, 4 score higher
        [0.9, 0.5, 0.5, 0.3, 0.5],  # target 0: strictly best
        [0.9, 0.5, 0.5, 0.3, 0.5],  # target 2: 0 higher, ties with 1 and 4
    ]
)
TARGETS = torch.tensor([1, 3, 0, 2])


def test_hand_ranks_both_tie_policies():
    assert target_ranks(SCORES, TARGETS, "pessimistic").tolist() == [2, 3, 0, 3]
    assert target_ranks(SCORES, TARGETS, "optimistic").tolist() == [0, 3, 0, 1]


def test_hand_metrics_through_evaluate():
    res = evaluate(lambda pos: SCORES[pos], np.arange(4), TARGETS.numpy(), ties="pessimistic")
    assert res.ranks.tolist() == [2, 3, 0, 3]
    m = res.metrics
    assert m["recall@10"] == 1.0
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5) + 1 + 1 / math.log2(5)) / 4)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / 4 + 1 + 1 / 4) / 4)
    opt = evaluate(lambda pos: SCORES[pos], np.arange(4), TARGETS.numpy(), ties="optimistic")
    assert opt.metrics["mrr"] == pytest.approx((1 + 1 / 4 + 1 + 1 / 2) / 4)


def test_collapsed_model_scores_zero_by_default():
    n_users, n_items = 50, 200
    targets = np.random.default_rng(0).integers(0, n_items, n_users)
    flat = lambda pos: torch.zeros(len(pos), n_items)  # noqa: E731
    res = evaluate(flat, np.arange(n_users), targets)
    assert res.ranks.tolist() == [n_items - 1] * n_users
    assert res.metrics["recall@10"] == 0.0 and res.metrics["ndcg@10"] == 0.0
    assert res.metrics["mrr"] == pytest.approx(1 / n_items)
    # RecFormer's optimistic policy would call the same model perfect
    assert evaluate(flat, np.arange(n_users), targets, ties="optimistic").metrics["recall@10"] == 1.0


def test_nan_scores_rank_last():
    scores = torch.tensor([[float("nan"), 1.0, 2.0], [float("nan")] * 3])
    assert target_ranks(scores, torch.tensor([0, 1]), "pessimistic").tolist() == [2, 2]
    assert target_ranks(scores, torch.tensor([0, 1]), "optimistic").tolist() == [2, 0]


def test_float64_scores_keep_their_precision():
    scores = torch.tensor([[1.0, 1.0 + 1e-12]], dtype=torch.float64)
    assert target_ranks(scores, torch.tensor([0]), "pessimistic").tolist() == [1]
    assert target_ranks(scores, torch.tensor([1]), "pessimistic").tolist() == [0]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_agrees_with_brute_force_on_random_scores(ties):
    rng = np.random.default_rng(1)
    n_users, n_items = 37, 23
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # many ties
    targets = rng.integers(0, n_items, n_users)
    res = evaluate(lambda pos: torch.from_numpy(scores[pos]), np.arange(n_users), targets, batch_size=5, ties=ties)
    for u in range(n_users):
        s_t = scores[u, targets[u]]
        others = [scores[u, i] for i in range(n_items) if i != targets[u]]
        higher = sum(s > s_t for s in others)
        equal = sum(s == s_t for s in others)
        assert res.ranks[u] == higher + (equal if ties == "pessimistic" else 0)
    brute_ndcg = np.mean([1 / math.log2(r + 2) if r < 10 else 0.0 for r in res.ranks])
    assert res.metrics["ndcg@10"] == pytest.approx(brute_ndcg)


def test_batching_does_not_change_ranks():
    rng = np.random.default_rng(2)
    scores = torch.from_numpy(rng.normal(size=(101, 40)).astype(np.float32))
    targets = rng.integers(0, 40, 101)
    calls = []

    def score_fn(pos):
        calls.append(len(pos))
        return scores[pos]

    a = evaluate(score_fn, np.arange(101), targets, batch_size=7)
    assert max(calls) == 7 and sum(calls) == 101
    b = evaluate(score_fn, np.arange(101), targets, batch_size=1000)
    assert np.array_equal(a.ranks, b.ranks)


def test_item_subset_and_save_load(tmp_path):
    scores = torch.arange(10, dtype=torch.float32).repeat(4, 1)  # item i scores i: rank = 9 - i
    targets = np.array([9, 0, 5, 3])
    res = evaluate(lambda pos: scores[pos], np.array([10, 11, 12, 13]), targets)
    assert res.ranks.tolist() == [0, 9, 4, 6]
    cold = np.zeros(10, dtype=bool)
    cold[[0, 3]] = True
    sub = res.for_items(cold)
    assert sub.users.tolist() == [11, 13] and sub.ranks.tolist() == [9, 6]
    assert sub.metrics["recall@10"] == 1.0 and sub.metrics["mrr"] == pytest.approx((1 / 10 + 1 / 7) / 2)
    save_ranks(tmp_path / "ranks.npz", {"valid": res, "test": sub})
    back = load_ranks(tmp_path / "ranks.npz")
    assert set(back) == {"valid", "test"}
    assert back["test"].users.tolist() == [11, 13] and back["valid"].ranks.tolist() == [0, 9, 4, 6]
    assert back["valid"].metrics == res.metrics


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="ties"):
        target_ranks(SCORES, TARGETS, "random")
    with pytest.raises(ValueError, match="out of range"):
        target_ranks(SCORES, torch.tensor([0, 1, 2, 5]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.integers(0, 4, size=(64, 30)).astype(np.float32))
    targets = rng.integers(0, 30, 64)
    cpu = evaluate(lambda pos: scores[pos], np.arange(64), targets)
    gpu = evaluate(lambda pos: scores[pos].cuda(), np.arange(64), targets)
    assert np.array_equal(cpu.ranks, gpu.ranks)


def test_a_score_table_of_another_width_than_the_items_is_refused():
    """Only the rows were checked: a score function that kept a padding column (or dropped an item) was ranked
    silently, each target's rank among the wrong set."""
    users, targets = np.arange(3), np.array([0, 2, 1])
    scores = torch.tensor([[3.0, 1.0, 2.0, 9.0], [0.0, 1.0, 2.0, 9.0], [5.0, 4.0, 1.0, 9.0]])  # column 3: padding
    with pytest.raises(ValueError, match=r"shape \(3, 4\); expected one column per item \(3\)"):
        evaluate(lambda pos: scores[torch.as_tensor(pos)], users, targets, n_items=3)
    ok = evaluate(lambda pos: scores[torch.as_tensor(pos), :3], users, targets, n_items=3)
    assert ok.ranks.tolist() == [0, 0, 1]


def test_a_ranks_file_whose_arrays_differ_in_length_is_refused(tmp_path):
    users, targets = np.arange(4), np.array([1, 0, 2, 1])
    result = evaluate(lambda pos: torch.zeros(len(pos), 3), users, targets)
    save_ranks(tmp_path / "ranks.npz", {"test": result})
    assert load_ranks(tmp_path / "ranks.npz")["test"].ranks.tolist() == result.ranks.tolist()
    with np.load(tmp_path / "ranks.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "cut.npz", **{**arrays, "test_ranks": arrays["test_ranks"][:3]})
    with pytest.raises(ValueError, match=r"cut\.npz: test: users \(4,\), targets \(4,\) and ranks \(3,\) differ"):
        load_ranks(tmp_path / "cut.npz")
