"""Experiment splits as data functions: cold items (Figure 2) and training-user fractions
for the cross-domain zero-shot / low-resource setting (Figure 3)."""

from __future__ import annotations

import math

import numpy as np

from laser_repro.data.dataset import SeqDataset

COLD_FRACTION = 0.35  # paper §5.3, after Kim et al. (2024): bottom 35% of items by interactions


def cold_items(ds: SeqDataset, fraction: float = COLD_FRACTION) -> np.ndarray:
    """Boolean mask over items: the ``fraction`` of items with the fewest training interactions.

    Items are ordered by training interaction count, ties broken by item index (stable),
    and the first ``ceil(fraction * n_items)`` are cold.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"cold fraction must be in [0, 1], got {fraction}")
    counts = ds.train_item_counts()
    order = np.argsort(counts, kind="stable")
    mask = np.zeros(ds.n_items, dtype=bool)
    mask[order[: math.ceil(fraction * ds.n_items)]] = True
    return mask


def sample_train_users(ds: SeqDataset, fraction: float, seed: int) -> np.ndarray:
    """A seeded random ``fraction`` of the users with training data (sorted user indices).

    Figure 3's low-resource setting: 0 gives no users (zero-shot), 1 gives all of them.
    Fractions are nested for a fixed seed: the users of 5% are among those of 10%.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"training-user fraction must be in [0, 1], got {fraction}")
    users = np.flatnonzero(ds.train_len >= 2)  # a training row needs an input and a target
    order = np.random.default_rng(seed).permutation(users.shape[0])
    n = int(round(fraction * users.shape[0]))
    return np.sort(users[order[:n]])


def seeded_subset(users: np.ndarray, cap: int | None, seed: int, stream: int) -> np.ndarray:
    """At most ``cap`` of ``users`` (sorted), drawn with ``default_rng([seed, stream])``; all when ``cap`` is None.

    Trainers use stream 1 for training users and 2 for evaluation users, so a cap draws the same
    users in every method's runs of one seed.
    """
    if cap is None or users.shape[0] <= cap:
        return users
    return np.sort(np.random.default_rng([seed, stream]).choice(users, cap, replace=False))


def eval_user_subset(ds: SeqDataset, split: str, seed: int, cap: int | None) -> np.ndarray:
    """Users with a ``split`` target; a seeded subset of ``cap`` of them when set (smoke runs, curves)."""
    return seeded_subset(ds.eval_users(split), cap, seed, 2)


def run_eval_users(ds: SeqDataset, split: str, cfg) -> np.ndarray:
    """The users a run evaluates on ``split``: ``cfg.max_valid_users`` caps validation (selection) when set,
    else ``cfg.max_eval_users`` caps both splits (smoke runs); seeded by ``cfg.seed``."""
    cap = cfg.max_valid_users if split == "valid" and cfg.max_valid_users is not None else cfg.max_eval_users
    return eval_user_subset(ds, split, cfg.seed, cap)
