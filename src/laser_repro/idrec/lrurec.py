"""LRURec (Yue et al., 2024): linear recurrent units for sequential recommendation; LlamaRec's retriever.

As LlamaRec's ``model/lru.py`` and its loader (``dataloader/lru.py``):
* embedding (row 0 is the padding token, learned: it starts the prediction of a window's first item),
  dropout, then LayerNorm;
* ``layers`` blocks of an LRU layer (LayerNorm(x + dropout(Re(C h)))) and a position-wise FFN 4x
  (LayerNorm(x + dropout(W2 dropout(GELU(W1 x))))). The LRU layer's state has 2 ``hidden`` complex
  channels: h_t = lambda h_{t-1} + gamma (B x_t), lambda = exp(-exp(nu) + i exp(theta)), with
  log nu, log theta and log gamma learned, B and C complex with biases. An earlier position feeds
  the state only when it is a real item (the code's mask); computed in closed form,
  h_t = gamma B x_t + sum_{s<t, s real} lambda^(t-s) gamma B x_s, one masked [L, L] product;
* scores: states against the tied item embeddings plus an item bias, over every token (padding
  included, as the code's softmax; it never ranks: :meth:`LRURec.full_scores` drops it);
* truncated normal initialisation N(0, 0.02) within 2 std for every weight and bias but the
  LayerNorms and the LRU's log parameters; AdamW without weight decay on biases and LayerNorms,
  eps 1e-9, gradients clipped at norm 5 (:meth:`LRURec.param_groups`, ``max_grad_norm``).
Training rows (:meth:`LRURec.make_instances`): a training sequence shorter than 2 ``max_len`` is one
row, a longer one rows of ``max_len`` items from its end; each row predicts every item, the first
from the padding token. Cross-entropy at every position (:meth:`LRURec.batch_loss`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.config import Range
from laser_repro.idrec.base import MODEL_RANGES, PAD, SeqRecModel
from laser_repro.train.scaffold import decay_groups


@dataclass
class LRURecConfig:
    RANGES: ClassVar[dict[str, Range]] = {**MODEL_RANGES, "r_min": Range(0, 1), "r_max": Range(0, 1)}

    hidden: int = 64
    layers: int = 2
    max_len: int = 50
    dropout: float = 0.2  # embedding and FFN dropout (the code's bert_dropout)
    attn_dropout: float = 0.2  # dropout on each LRU layer's output (bert_attn_dropout)
    r_min: float = 0.8  # |lambda| initialised uniformly on the ring [r_min, r_max]
    r_max: float = 0.99
    init_std: float = 0.02  # truncated normal within 2 std
    layer_norm_eps: float = 1e-5  # torch's default: the code sets none


class LRULayer(nn.Module):
    """One LRU layer of ``d`` input channels and ``2 d`` complex state channels, with its residual and LayerNorm."""

    def __init__(self, d: int, r_min: float, r_max: float, dropout: float, eps: float):
        super().__init__()
        n = 2 * d
        u1, u2 = torch.rand(n), torch.rand(n)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(u2 * 2 * math.pi)
        lam = torch.exp(torch.complex(-torch.exp(nu_log), torch.exp(theta_log)))
        gamma_log = torch.log(torch.sqrt(1 - lam.abs() ** 2))
        self.params_log = nn.Parameter(torch.stack([nu_log, theta_log, gamma_log]))
        with warnings.catch_warnings():  # torch flags complex parameters as a new feature; the code relies on them
            warnings.filterwarnings("ignore", message="Complex modules")
            self.in_proj = nn.Linear(d, n).to(torch.cfloat)  # B
            self.out_proj = nn.Linear(n, d).to(torch.cfloat)  # C
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d, eps=eps)

    def log_decay(self) -> torch.Tensor:
        """log lambda = -nu + i theta per state channel."""
        nu, theta = torch.exp(self.params_log[:2])
        return torch.complex(-nu, theta)

    def decay(self) -> torch.Tensor:
        """lambda per state channel (complex, |lambda| < 1)."""
        return torch.exp(self.log_decay())

    def states(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """h [B, L, 2d] of ``x`` [B, L, d] (``valid`` [B, L]: 1 at real items)."""
        gamma = torch.exp(self.params_log[2])
        u = self.in_proj(x.to(torch.cfloat)) * gamma  # gamma B x_t
        t = torch.arange(x.shape[1], device=x.device)
        gap = (t[:, None] - t[None, :]).clamp(min=0)
        # lambda^gap as exp(gap log lambda): finite even where lambda underflows to 0 (0 ** 0 is NaN in torch)
        powers = torch.exp(gap[..., None].to(torch.float32) * self.log_decay()) * (t[:, None] >= t[None, :])[..., None]
        v = valid[..., None].to(u.real.dtype)
        return torch.einsum("tsn,bsn->btn", powers, u * v) + u * (1 - v)  # a padding position keeps its own input

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.dropout(self.out_proj(self.states(x, valid)).real) + x)


class FeedForward(nn.Module):
    def __init__(self, d: int, dropout: float, eps: float):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.dropout(self.w_2(self.dropout(F.gelu(self.w_1(x))))) + x)


class LRUBlock(nn.Module):
    def __init__(self, c: LRURecConfig):
        super().__init__()
        self.lru = LRULayer(c.hidden, c.r_min, c.r_max, c.attn_dropout, c.layer_norm_eps)
        self.ffn = FeedForward(c.hidden, c.dropout, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.lru(x, valid))


def truncated_normal_init(model: nn.Module, std: float) -> None:
    """The code's ``truncated_normal_init``: N(0, std) cut at 2 std for every parameter (real and imaginary parts
    alike) but the LayerNorms' and the LRU's log parameters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" not in name and "params_log" not in name:
                nn.init.trunc_normal_(torch.view_as_real(p) if p.is_complex() else p, std=std, a=-2 * std, b=2 * std)


NO_DECAY = ("bias", "layer_norm")  # the code's _create_optimizer


class LRURec(SeqRecModel):
    name = "lrurec"
    min_train_items: ClassVar[int] = 1  # the code's loader trains every user (one item: predicted from padding)
    max_grad_norm: ClassVar[float | None] = 5.0  # the code's max_grad_norm

    def __init__(self, n_items: int, config: LRURecConfig):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.embedding = nn.Embedding(n_items + 1, c.hidden)  # token 0: padding, learned (starts a window)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.layer_norm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.blocks = nn.ModuleList(LRUBlock(c) for _ in range(c.layers))
        self.bias = nn.Parameter(torch.zeros(n_items + 1))  # per token, padding included (as the code)
        truncated_normal_init(self, c.init_std)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_groups(self, weight_decay, NO_DECAY)

    def optimizer_options(self) -> dict:
        return {"eps": 1e-9}  # the code's adam_epsilon

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        valid = tokens > PAD
        x = self.layer_norm(self.embed_dropout(self.embedding(tokens)))
        for block in self.blocks:
            x = block(x, valid)
        return x

    def item_embeddings(self) -> torch.Tensor:
        return self.embedding.weight[1 : self.n_items + 1]

    def full_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.user_states(tokens) @ self.item_embeddings().T + self.bias[1:]

    def make_instances(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of input tokens and label tokens ``[n, max_len]`` (item + 1, right-padded with 0; a label 0 is not
        predicted). A sequence shorter than 2 ``max_len`` is one row, a longer one rows of ``max_len`` items
        from its end (the code's sliding window, step ``max_len``); each row's labels are its last ``max_len``
        items, its inputs the items before each, the first item's input the padding token."""
        L = self.config.max_len
        rows = []
        for s in sequences:
            s = np.asarray(s, dtype=np.int64) + 1
            rows += [s] if s.shape[0] < 2 * L else [s[i : i + L] for i in range(s.shape[0] - L, -1, -L)]
        inputs, labels = np.zeros((len(rows), L), np.int64), np.zeros((len(rows), L), np.int64)
        for r, w in enumerate(rows):
            lab = w[-L:]
            inp = w[:-1][-L:]
            if inp.shape[0] < lab.shape[0]:
                inp = np.concatenate([[PAD], inp])
            labels[r, : lab.shape[0]], inputs[r, : inp.shape[0]] = lab, inp
        return inputs, labels

    def batch_loss(self, tokens: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Cross-entropy over every token (padding included, with the bias) at each labelled position."""
        width = int((targets > PAD).sum(dim=1).max())
        states = self.sequence_states(tokens[:, :width])
        keep = targets[:, :width] > PAD
        logits = states[keep] @ self.embedding.weight.T + self.bias
        return F.cross_entropy(logits, targets[:, :width][keep])
