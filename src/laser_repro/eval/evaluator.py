"""The shared full-ranking evaluator (paper §5.1, spec "Evaluation").

Every method is scored over ALL items, history items not masked. The rank of the target is
the number of other items scoring strictly higher, plus, under the default
``ties="pessimistic"``, the number of other items scoring exactly the same (so a collapsed
model that scores everything equally gets the worst rank). ``ties="optimistic"`` counts
only strictly higher items, as RecFormer's evaluation does. A NaN score ranks below every
number and ties with other NaN (so under the default a model that outputs NaN cannot look good
either; under optimistic ties an all-NaN row ranks its target first, as a constant model's does).
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
    if scores.dim() != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [B, n_items] and targets [B]; got {tuple(scores.shape)} and {tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= scores.shape[1]):
        raise ValueError(f"target item index out of range 0..{scores.shape[1] - 1}")
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()  # bf16/fp16 -> fp32; fp64 stays fp64 (no spurious ties)
    target_scores = scores.gather(1, targets.view(-1, 1).long())
    # One pass over the scores: >= counts the target itself once (NaN compares False).
    # Counting in int32 avoids an int64 copy of the [B, I] mask (half the time on CPU).
    if ties == "optimistic":
        ranks = (scores > target_scores).sum(dim=1, dtype=torch.int32).long()
    else:
        ranks = (scores >= target_scores).sum(dim=1, dtype=torch.int32).long() - 1
    bad = torch.isnan(target_scores.view(-1))
    if bool(bad.any()):  # a NaN target ranks as -inf: below every number, tied with other NaN/-inf
        rows = scores[bad]
        finite_above = (rows > float("-inf")).sum(dim=1)
        tied = (torch.isnan(rows) | (rows == float("-inf"))).sum(dim=1) - 1
        ranks[bad] = finite_above + (tied if ties == "pessimistic" else 0)
    return ranks


@dataclass
class EvalResult:
    """Per-user ranks for one split and their aggregate metrics."""

    users: np.ndarray
    targets: np.ndarray
    ranks: np.ndarray
    metrics: dict[str, float]

    def subset(self, mask: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> "EvalResult":
        """Restrict to the users selected by a boolean ``mask`` over this result's users."""
        ranks = self.ranks[mask]
        return EvalResult(self.users[mask], self.targets[mask], ranks, aggregate(ranks, ks))

    def for_items(self, item_mask: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> "EvalResult":
        """Users whose target item is selected by the boolean ``item_mask`` over all items
        (Figure 2: ``data.splits.cold_items(ds)``). Ranks stay ranks among ALL items."""
        return self.subset(np.asarray(item_mask, dtype=bool)[self.targets], ks)


def evaluate(
    score_fn: ScoreFn,
    users: np.ndarray,
    targets: np.ndarray,
    batch_size: int = 1024,
    ties: str = "pessimistic",
    ks: tuple[int, ...] = DEFAULT_KS,
    n_items: int | None = None,
) -> EvalResult:
    """Score ``users`` in batches with ``score_fn`` and rank each user's target.

    ``score_fn`` receives a slice of positions ``np.arange(start, stop)`` into ``users`` and
    returns scores of shape [len(slice), n_items] on any device; given ``n_items`` (the data set's), a score table
    of another width (a padding column kept, an item dropped) is refused instead of ranked.
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
            if scores.shape[0] != pos.shape[0]:
                raise ValueError(f"score_fn returned {scores.shape[0]} rows for {pos.shape[0]} users")
            if n_items is not None and (scores.dim() != 2 or scores.shape[1] != n_items):
                raise ValueError(f"score_fn returned scores of shape {tuple(scores.shape)}; expected one column "
                                 f"per item ({n_items}): full ranking ranks every item and nothing else")
            t = torch.as_tensor(targets[pos], device=scores.device)
            ranks[pos] = target_ranks(scores, t, ties).cpu().numpy()
    return EvalResult(users, targets, ranks, aggregate(ranks, ks))


def reuse_ranks(previous: EvalResult, users: np.ndarray, targets: np.ndarray,
                rank_rest: Callable[[np.ndarray], EvalResult], ks: tuple[int, ...] = DEFAULT_KS) -> EvalResult:
    """The result over ``users`` (with their ``targets``): each user's rank from ``previous`` where it
    ranked that user (for the same target), ``rank_rest(others)`` for the others. A per-user rank depends
    on that user alone, so this equals ranking every user anew with the same model."""
    users, targets = np.asarray(users, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    where = {int(u): i for i, u in enumerate(previous.users)}
    old = np.array([where.get(int(u), -1) for u in users], dtype=np.int64)
    have = old >= 0
    if not np.array_equal(previous.targets[old[have]], targets[have]):
        raise ValueError("the previous ranks are for other targets of the same users (another data split?)")
    ranks = np.empty(users.shape[0], dtype=np.int64)
    ranks[have] = previous.ranks[old[have]]
    if (~have).any():
        rest = rank_rest(users[~have])
        if not np.array_equal(rest.users, users[~have]):
            raise ValueError("rank_rest returned other users than it was given")
        ranks[~have] = rest.ranks
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
                ranks, users, targets = z[key], z[f"{split}_users"], z[f"{split}_targets"]
                if not users.shape == targets.shape == ranks.shape:
                    raise ValueError(f"{path}: {split}: users {users.shape}, targets {targets.shape} and ranks "
                                     f"{ranks.shape} differ in length (a damaged ranks file)")
                out[split] = EvalResult(users, targets, ranks, aggregate(ranks, ks))
    return out
