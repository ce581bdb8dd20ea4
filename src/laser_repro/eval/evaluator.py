"""The shared full-ranking evaluator (paper §5.1, spec "Evaluation").

Every method is scored over ALL items, history items not masked. The rank of the target is
the number of other items scoring strictly higher, plus, under the default
``ties="pessimistic"``, the number of other items scoring exactly the same (so a collapsed
model that scores everything equally gets the worst rank). ``ties="optimistic"`` counts
only strictly higher items, as RecFormer's evaluation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from laser_repro.eval.metrics import DEFAULT_KS, aggregate
from laser_repro.io import atomic_path

TIES = ("pessimistic", "optimistic")

# scores for a batch of positions into the users/targets arrays -> [b, n_items] float tensor
ScoreFn = Callable[[np.ndarray], torch.Tensor]


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, ties: str = "pessimistic") -> torch.Tensor:
    """0-based rank of each row's target among all columns of ``scores`` ([B, I], targets [B])."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    scores = scores.float()
    target_scores = scores.gather(1, targets.view(-1, 1).long())
    higher = (scores > target_scores).sum(dim=1)
    if ties == "optimistic":
        return higher
    equal = (scores == target_scores).sum(dim=1) - 1  # the target itself is not a tie
    return higher + equal


@dataclass
class EvalResult:
    """Per-user ranks for one split and their aggregate metrics."""

    users: np.ndarray
    targets: np.ndarray
    ranks: np.ndarray
    metrics: dict[str, float]

    def subset(self, mask: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> "EvalResult":
        """Restrict to the users selected by a boolean ``mask`` (e.g. cold target items)."""
        ranks = self.ranks[mask]
        return EvalResult(self.users[mask], self.targets[mask], ranks, aggregate(ranks, ks))


def evaluate(
    score_fn: ScoreFn,
    users: np.ndarray,
    targets: np.ndarray,
    batch_size: int = 1024,
    ties: str = "pessimistic",
    ks: tuple[int, ...] = DEFAULT_KS,
) -> EvalResult:
    """Score ``users`` in batches with ``score_fn`` and rank each user's target.

    ``score_fn`` receives a slice of positions ``np.arange(start, stop)`` into ``users`` and
    returns scores of shape [len(slice), n_items] on any device.
    """
    users = np.asarray(users, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if users.shape != targets.shape:
        raise ValueError(f"users {users.shape} and targets {targets.shape} differ in shape")
    ranks = np.empty(users.shape[0], dtype=np.int64)
    with torch.no_grad():
        for start in range(0, users.shape[0], batch_size):
            pos = np.arange(start, min(start + batch_size, users.shape[0]))
            scores = score_fn(pos)
            t = torch.as_tensor(targets[pos], device=scores.device)
            ranks[pos] = target_ranks(scores, t, ties).cpu().numpy()
    return EvalResult(users, targets, ranks, aggregate(ranks, ks))


def save_ranks(path: str | Path, results: dict[str, EvalResult]) -> None:
    """Save per-user ranks of each split to ``ranks.npz`` (keys ``{split}_users/targets/ranks``)."""
    arrays = {}
    for split, res in results.items():
        arrays[f"{split}_users"] = res.users
        arrays[f"{split}_targets"] = res.targets
        arrays[f"{split}_ranks"] = res.ranks
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_ranks(path: str | Path, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, EvalResult]:
    """Inverse of :func:`save_ranks`."""
    out = {}
    with np.load(path) as z:
        for key in z.files:
            if key.endswith("_ranks"):
                split = key[: -len("_ranks")]
                ranks = z[key]
                out[split] = EvalResult(z[f"{split}_users"], z[f"{split}_targets"], ranks, aggregate(ranks, ks))
    return out
