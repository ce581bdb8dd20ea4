"""BERT4Rec (Sun et al., 2019) as run by RecBole under UniSRec's settings.

Bidirectional self-attention; trained with the cloze objective (random items replaced by a
[MASK] token and predicted over all items); at inference a [MASK] is appended after the
history and its state scores all items by dot product with the item table, with no output head
(RecBole's FFN + GELU + LayerNorm head and item bias came in September 2023, after the RecFormer
Table 2 the paper copies; docs/decisions.md). As Laser's collaborative encoder (paper §4.2) it reads
the history WITHOUT a mask token (see :mod:`laser_repro.idrec.encoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.config import Range
from laser_repro.idrec.base import MODEL_RANGES, PAD, SeqRecModel, length_buckets, trim, check_heads
from laser_repro.idrec.layers import TransformerEncoder, attention_mask, init_weights


@dataclass
class BERT4RecConfig:
    RANGES: ClassVar[dict[str, Range]] = MODEL_RANGES
    check = check_heads

    hidden: int = 64  # d_c = 64 (paper §4.2: 2 blocks, 2 heads, 32 per head)
    layers: int = 2
    heads: int = 2
    inner: int = 256  # FFN width (RecBole inner_size)
    max_len: int = 50  # positions, the appended [MASK] included (RecBole: history <= max_len - 1 at test)
    dropout: float = 0.2  # RecBole BERT4Rec default
    attn_dropout: float = 0.2
    mask_ratio: float = 0.2  # cloze: probability that an item is masked (RecBole default)
    ft_ratio: float = 0.5  # share of instances that mask ONLY the last item (matches inference; RecBole >= 1.1)
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02


def cloze_mask(tokens: np.ndarray, mask_ratio: float, ft_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Which positions to mask ([n, L] bool) for right-padded ``tokens``.

    Each instance masks only its last real item with probability ``ft_ratio``; otherwise each
    real item independently with probability ``mask_ratio``, and the last one if none was drawn.
    """
    real = tokens > PAD
    last = real.sum(axis=1) - 1
    masked = real & (rng.random(tokens.shape) < mask_ratio)
    only_last = rng.random(tokens.shape[0]) < ft_ratio
    masked[only_last] = False
    need_last = only_last | ~masked.any(axis=1)
    rows = np.flatnonzero(need_last & (last >= 0))
    masked[rows, last[rows]] = True
    return masked


class BERT4Rec(SeqRecModel):
    name = "bert4rec"

    def __init__(self, n_items: int, config: BERT4RecConfig):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, c.hidden, padding_idx=0)  # pad, items, [MASK]
        self.pos_emb = nn.Embedding(c.max_len, c.hidden)
        self.ln = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(c.layers, c.hidden, c.heads, c.inner, c.dropout, c.attn_dropout, c.layer_norm_eps)
        self.apply(lambda m: init_weights(m, c.init_std))

    @property
    def history_len(self) -> int:
        return self.config.max_len - 1  # one position is left for the appended [MASK]

    def sequence_states(self, tokens: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position states [B, L, H]; with ``query`` ([B] positions) only those rows, [B, H]."""
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.ln(self.item_emb(tokens) + self.pos_emb(pos)[None]))
        return self.encoder(x, attention_mask(tokens, causal=False), query)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]

    def _last_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append [MASK] after each history (keeping its last ``max_len - 1`` items); its state."""
        lengths = (tokens > PAD).sum(dim=1)
        if tokens.shape[1] >= self.config.max_len:  # keep room for the mask: shift long rows left
            keep = self.history_len
            idx = (lengths - keep).clamp(min=0)[:, None] + torch.arange(keep, device=tokens.device)[None]
            tokens = torch.where(
                torch.arange(keep, device=tokens.device)[None] < lengths[:, None].clamp(max=keep),
                tokens.gather(1, idx.clamp(max=tokens.shape[1] - 1)),
                torch.zeros((), dtype=tokens.dtype, device=tokens.device),
            )
            lengths = lengths.clamp(max=keep)
        tokens = torch.cat([tokens, torch.zeros_like(tokens[:, :1])], dim=1)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        tokens[rows, lengths] = self.mask_token
        return self.sequence_states(tokens, query=lengths)

    def make_instances(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Every prefix ``s[:t+1]`` (t >= 1) of a training sequence, its last ``max_len`` items; target = s[t]."""
        L = self.config.max_len
        rows, targets = [], []
        for s in sequences:
            for t in range(1, len(s)):
                rows.append(s[max(0, t + 1 - L) : t + 1])
                targets.append(int(s[t]))
        tokens = np.zeros((len(rows), L), dtype=np.int64)
        for r, seq in enumerate(rows):
            tokens[r, : len(seq)] = np.asarray(seq, dtype=np.int64) + 1
        return tokens, np.asarray(targets, dtype=np.int64)

    def batch_loss(self, tokens: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Cloze cross-entropy over all items at the masked positions (mean over masked items)."""
        masked = torch.from_numpy(
            cloze_mask(tokens.cpu().numpy(), self.config.mask_ratio, self.config.ft_ratio, rng)
        ).to(tokens.device)
        states, labels = [], []
        for rows in length_buckets(tokens):  # same per-row result as the padded batch, less padding
            sub = trim(tokens[rows])
            m = masked[rows][:, : sub.shape[1]]
            labels.append(sub[m] - 1)
            states.append(self.sequence_states(sub.masked_fill(m, self.mask_token))[m])
        return F.cross_entropy(torch.cat(states) @ self.item_embeddings().T, torch.cat(labels))
