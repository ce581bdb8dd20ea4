"""What every ID-based sequential recommender shares: the token layout and the next-item head.

Token layout (all models): item index ``i`` is token ``i + 1``; token 0 is padding. Inputs
are RIGHT-padded ``[B, L]`` token matrices holding the most recent items in time order, with
positions counted from the first real item (RecBole's layout). Scores are dot products of a
user state with the item embedding table, over all items (full softmax, RecBole ``CE`` loss).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.config import POSITIVE, POSITIVE_REAL, PROBABILITY, ConfigError, Range

PAD = 0
# Allowed values of the model configs' fields (each model config declares RANGES = MODEL_RANGES).
MODEL_RANGES: dict[str, Range] = {
    "hidden": POSITIVE, "gru_hidden": POSITIVE, "layers": POSITIVE, "heads": POSITIVE, "inner": POSITIVE,
    "max_len": POSITIVE, "text_dim": POSITIVE, "dropout": Range(0, 1), "attn_dropout": Range(0, 1),
    "item_dropout": Range(0, 1), "mask_ratio": PROBABILITY, "ft_ratio": PROBABILITY, "layer_norm_eps": POSITIVE_REAL,
    "init_std": POSITIVE_REAL,
}


def check_heads(cfg) -> None:
    """``hidden`` must split evenly over ``heads`` (the models' ``check``)."""
    if getattr(cfg, "heads", None) and cfg.hidden % cfg.heads:
        raise ConfigError(f"heads: hidden = {cfg.hidden} does not split evenly over {cfg.heads} heads")


def pad_histories(histories: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
    """Ragged item histories -> right-padded tokens ``[B, W]`` of each history's last ``max_len`` items.

    ``W`` is the longest kept history (at least 1). Empty histories become all-padding rows.
    """
    kept = [np.asarray(h, dtype=np.int64)[-max_len:] if max_len > 0 else np.zeros(0, np.int64) for h in histories]
    width = max([1] + [k.shape[0] for k in kept])
    out = np.zeros((len(kept), width), dtype=np.int64)
    for row, k in enumerate(kept):
        out[row, : k.shape[0]] = k + 1
    return out


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-padding columns (right padding makes this loss-free)."""
    width = int((tokens > PAD).sum(dim=1).max().clamp(min=1))
    return tokens[:, :width]


BUCKET_WIDTHS = (2, 4, 8, 16, 32)  # rows are grouped by length up to these widths, the rest together


def length_buckets(tokens: torch.Tensor) -> list[torch.Tensor]:
    """Row indices of ``tokens`` grouped by length (see :data:`BUCKET_WIDTHS`), empty groups dropped.

    Rows are independent in every model here, so running each group trimmed to its own width
    gives the same per-row results as the whole padded batch while skipping most padding
    (prefix instances on Amazon data are ~4 items long, padded to 50).
    """
    lengths = (tokens > PAD).sum(dim=1)
    groups, lower = [], -1
    for upper in BUCKET_WIDTHS + (tokens.shape[1],):
        rows = torch.nonzero((lengths > lower) & (lengths <= upper)).flatten()
        if rows.numel():
            groups.append(rows)
        lower = upper
        if upper >= tokens.shape[1]:
            break
    return groups


def last_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token (0 for an all-padding row)."""
    return ((tokens > PAD).sum(dim=1) - 1).clamp(min=0)


def next_item_instances(sequences: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """RecBole's sequential augmentation: every prefix of every training sequence predicts its next item.

    For a sequence ``s`` and each ``t >= 1``: input = ``s[max(0, t - max_len):t]``, target = ``s[t]``.
    Returns right-padded tokens ``[n, max_len]`` and targets ``[n]`` (item indices).
    """
    hist, targets = [], []
    for s in sequences:
        for t in range(1, len(s)):
            hist.append(s[max(0, t - max_len) : t])
            targets.append(int(s[t]))
    tokens = np.zeros((len(hist), max_len), dtype=np.int64)
    for row, h in enumerate(hist):
        tokens[row, : len(h)] = np.asarray(h, dtype=np.int64) + 1
    return tokens, np.asarray(targets, dtype=np.int64)


class SeqRecModel(nn.Module):
    """Base class: a sequence encoder plus a full-softmax next-item head over all items."""

    name: ClassVar[str] = ""
    n_items: int
    hidden: int

    # ---- what each model defines ---------------------------------------------------
    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Last-layer states ``[B, L, hidden]`` for right-padded ``tokens`` (no extra tokens added)."""
        raise NotImplementedError

    def item_embeddings(self) -> torch.Tensor:
        """Output embedding of every item, ``[n_items, hidden]`` (row i = item i)."""
        raise NotImplementedError

    @property
    def history_len(self) -> int:
        """How many most-recent history items the model reads at inference."""
        return self.config.max_len

    # ---- shared behaviour ------------------------------------------------------------
    def user_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """State at each row's last real position, ``[B, hidden]`` (computed per length bucket)."""
        groups = length_buckets(tokens)
        parts = [self._last_states(trim(tokens[rows])) for rows in groups]
        out = parts[0].new_empty((tokens.shape[0], parts[0].shape[1]))
        for rows, part in zip(groups, parts):
            out[rows] = part
        return out

    def _last_states(self, tokens: torch.Tensor) -> torch.Tensor:
        states = self.sequence_states(tokens)
        return states[torch.arange(tokens.shape[0], device=tokens.device), last_positions(tokens)]

    def full_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scores of all items for each history, ``[B, n_items]``."""
        return self.user_states(tokens) @ self.item_embeddings().T

    def start_epoch(self, epoch: int) -> bool:
        """Called before each training epoch (1-based); models with stages switch here and return True
        when ``epoch`` begins a new stage (early stopping then restarts its count)."""
        return False

    min_train_items: ClassVar[int] = 2  # a training user needs this many training items (one instance)
    max_grad_norm: ClassVar[float | None] = None  # gradients clipped at this norm when the model's code does (LRURec)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """The optimiser's parameter groups: one, every parameter at ``weight_decay`` (LRURec exempts some)."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    def optimizer_options(self) -> dict:
        """Keyword arguments of the model's own Adam settings (betas, eps) over torch's defaults."""
        return {}

    def learning_rate(self, step: int, lr: float) -> float:
        """The learning rate of optimiser step ``step`` (1-based, counted from the run's first step):
        the run's ``lr`` unless the model schedules its own (RecGURU's warm-up)."""
        return lr

    def validates(self, epoch: int) -> bool:
        """Whether ``epoch`` may be validated, kept and end the run by early stopping: False in an earlier,
        fixed-length stage whose model is not the one that ranks (RecGURU's reconstruction stage)."""
        return True

    def make_instances(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Training instances (inputs, targets) from the users' training sequences."""
        return next_item_instances(sequences, self.config.max_len)

    def batch_loss(self, tokens: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Cross-entropy of the next item over ALL items (RecBole ``loss_type: CE``)."""
        return F.cross_entropy(self.full_scores(tokens), targets)
