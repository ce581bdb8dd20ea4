"""LRURec (Yue et al., 2024): linear recurrent units for sequential recommendation; LlamaRec's retriever.

Embedding + LayerNorm + dropout, then ``layers`` blocks of (LRU layer, residual, LayerNorm;
position-wise FFN 4x, residual, LayerNorm). An LRU layer is a diagonal complex linear recurrence
h_t = lambda * h_{t-1} + gamma * (B x_t), y_t = Re(C h_t) + D * x_t with
lambda = exp(-exp(nu) + i exp(theta)) and gamma = sqrt(1 - |lambda|^2), computed here in closed
form (h_t = sum_s lambda^(t-s) gamma B x_s) as one masked [L, L] product per channel. Scores:
the last state against the tied item embeddings plus an item bias; cross-entropy over all items
at every position of each training window (:meth:`LRURec.batch_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.config import Range
from laser_repro.idrec.base import MODEL_RANGES, PAD, SeqRecModel


@dataclass
class LRURecConfig:
    RANGES: ClassVar[dict[str, Range]] = {**MODEL_RANGES, "r_min": Range(0, 1), "r_max": Range(0, 1)}

    hidden: int = 64
    layers: int = 2
    max_len: int = 50
    dropout: float = 0.2
    attn_dropout: float = 0.2  # dropout inside each block (LRU output and FFN)
    r_min: float = 0.8  # |lambda| initialised uniformly on the ring [r_min, r_max]
    r_max: float = 0.99
    init_std: float = 0.02
    layer_norm_eps: float = 1e-12


class LRULayer(nn.Module):
    def __init__(self, d: int, r_min: float, r_max: float):
        super().__init__()
        u1, u2 = torch.rand(d), torch.rand(d)
        nu = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta = torch.log(u2 * math.pi * 2 * 0.1)  # small phases: mostly real decay (LRU paper's max_phase)
        self.nu, self.theta = nn.Parameter(nu), nn.Parameter(theta)
        self.B = nn.Parameter(torch.randn(d, d, dtype=torch.cfloat) / math.sqrt(2 * d))
        self.C = nn.Parameter(torch.randn(d, d, dtype=torch.cfloat) / math.sqrt(d))
        self.D = nn.Parameter(torch.randn(d) / math.sqrt(d))

    def decay(self) -> torch.Tensor:
        """lambda per channel (complex, |lambda| < 1)."""
        return torch.exp(torch.complex(-torch.exp(self.nu), torch.exp(self.theta)))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x`` [B, L, d] right-padded (``valid`` [B, L]); padding positions feed nothing forward."""
        lam = self.decay()
        gamma = torch.sqrt(1 - lam.abs() ** 2)
        L = x.shape[1]
        t = torch.arange(L, device=x.device)
        gap = (t[:, None] - t[None, :]).clamp(min=0)
        powers = lam[None, None, :] ** gap[..., None].to(torch.float32)  # [L, L, d]
        powers = powers * (t[:, None] >= t[None, :])[..., None]  # causal
        u = (x * valid[..., None]).to(torch.cfloat) @ self.B.T * gamma  # [B, L, d]
        h = torch.einsum("tsd,bsd->btd", powers, u)
        return (h @ self.C.T).real + x * self.D


class LRUBlock(nn.Module):
    def __init__(self, c: LRURecConfig):
        super().__init__()
        self.lru = LRULayer(c.hidden, c.r_min, c.r_max)
        self.ffn = nn.Sequential(nn.Linear(c.hidden, 4 * c.hidden), nn.GELU(), nn.Dropout(c.attn_dropout),
                                 nn.Linear(4 * c.hidden, c.hidden))
        self.ln1 = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.ln2 = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.attn_dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.lru(x, valid)))
        return self.ln2(x + self.drop(self.ffn(x)))


class LRURec(SeqRecModel):
    name = "lrurec"

    def __init__(self, n_items: int, config: LRURecConfig):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.item_emb = nn.Embedding(n_items + 1, c.hidden, padding_idx=PAD)
        nn.init.normal_(self.item_emb.weight, std=c.init_std)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.ln = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(LRUBlock(c) for _ in range(c.layers))

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        valid = (tokens > PAD).float()
        x = self.drop(self.ln(self.item_emb(tokens)))
        for block in self.blocks:
            x = block(x, valid)
        return x

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]

    def full_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.user_states(tokens) @ self.item_embeddings().T + self.item_bias

    def make_instances(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Training windows of ``max_len + 1`` items (one per user; longer sequences are cut into windows
        ending every ``max_len`` items from the end); inputs and shifted targets are taken in ``batch_loss``."""
        w = self.config.max_len + 1
        windows = []
        for s in sequences:
            s = np.asarray(s, dtype=np.int64)
            for end in range(s.shape[0], 1, -self.config.max_len):
                windows.append(s[max(0, end - w) : end])
        tokens = np.zeros((len(windows), w), dtype=np.int64)
        for row, s in enumerate(windows):
            tokens[row, : s.shape[0]] = s + 1
        return tokens, np.zeros(len(windows), dtype=np.int64)

    def batch_loss(self, tokens: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Cross-entropy over all items (with the item bias) at every position of each window."""
        width = int((tokens > PAD).sum(dim=1).max())
        tokens = tokens[:, :width]
        inputs, nxt = tokens[:, :-1], tokens[:, 1:]
        states = self.sequence_states(inputs)
        keep = nxt > PAD
        logits = states[keep] @ self.item_embeddings().T + self.item_bias
        return F.cross_entropy(logits, nxt[keep] - 1)
