"""Rank-based metrics (paper §5.1). Pure functions on 0-based rank arrays.

A rank is the number of items placed above the target (0 = top). Per-user values are
returned by the ``*_per_user`` functions; aggregate metrics are their means. Nothing is
rounded here.
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (10,)


def recall_per_user(ranks: np.ndarray, k: int) -> np.ndarray:
    """Recall@K (= HR@K with one target): 1 if rank < K else 0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_per_user(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K with one target: 1 / log2(rank + 2) if rank < K else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def mrr_per_user(ranks: np.ndarray, k: int | None = None) -> np.ndarray:
    """Reciprocal rank 1 / (rank + 1) over the full list (the paper's MRR), or 0 beyond K if given."""
    r = np.asarray(ranks, dtype=np.float64)
    rr = 1.0 / (r + 1.0)
    return rr if k is None else np.where(r < k, rr, 0.0)


def per_user_metrics(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Every metric's per-user values: recall@K, ndcg@K, mrr@K for each K, and full-list mrr."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_per_user(ranks, k)
        out[f"ndcg@{k}"] = ndcg_per_user(ranks, k)
        out[f"mrr@{k}"] = mrr_per_user(ranks, k)
    out["mrr"] = mrr_per_user(ranks)
    return out


def aggregate(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean of each per-user metric (unrounded); ``n`` is the number of users."""
    ranks = np.asarray(ranks)
    out = {name: float(v.mean()) if v.size else float("nan") for name, v in per_user_metrics(ranks, ks).items()}
    out["n"] = int(ranks.size)
    return out
