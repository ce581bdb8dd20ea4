"""RecGURU (Li et al., WSDM'22), single-domain: the Transformer autoencoder RecFormer ran.

Encoder: item embeddings plus sinusoidal positions, an EOS token appended after the last item;
the user vector is the encoder's state at EOS. Decoder: causal self-attention over the shifted
sequence, cross-attention to the user vector, a feed-forward layer; its state at each position
predicts the next item by a dot product with the shared item table (all items at evaluation).
There are two decoders of that form, as the official default (``share_dec False``): the
autoencoder's (stage 1) and a separate recommender (``MyRec.recommend``: stage 2 and evaluation),
sharing the item table and positions.

Two stages (official ``train_auto.py``), switched by epoch (``ae_epochs``):
1. autoencoder reconstruction: sampled softmax of each next item against ``ae_negatives``
   uniform negatives (:func:`sampled_softmax_loss`), under the official Noam schedule
   (:func:`noam`, ``ae_warmup`` steps) instead of the run's lr;
2. recommendation: the recommender decoder, BPR against ``bpr_negatives`` uniform negatives per
   position (:func:`bpr_loss`), with the encoder output detached (the official ``fix_enc``), at the
   run's lr, with a fresh Adam (the official ``opt_rec``); validated in this stage only.
Both stages use the official Adam betas (0.9, 0.99) and eps 1e-9.

Training instances are whole training sequences (the decoder predicts every next item), not
RecBole's prefixes. Full ranking at evaluation: the decoder's last state against every item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.config import NON_NEGATIVE, POSITIVE, POSITIVE_REAL, Range
from laser_repro.idrec.base import MODEL_RANGES, PAD, SeqRecModel, check_heads, length_buckets, trim
from laser_repro.idrec.layers import TransformerEncoder, attention_mask, init_weights


@dataclass
class RecGURUConfig:
    RANGES: ClassVar[dict[str, Range]] = {**MODEL_RANGES, "ae_epochs": NON_NEGATIVE, "ae_negatives": POSITIVE,
                                          "bpr_negatives": POSITIVE, "ae_warmup": NON_NEGATIVE,
                                          "adam_beta2": Range(0, 1), "adam_eps": POSITIVE_REAL}
    check = check_heads

    hidden: int = 32  # d_model (official CLI default)
    layers: int = 3  # encoder and decoder blocks (official, Amazon pairs)
    heads: int = 1
    inner: int = 512  # d_ff
    max_len: int = 50  # RecFormer: 50 items "for all baselines" (official code: 100)
    dropout: float = 0.5
    attn_dropout: float = 0.5
    ae_epochs: int = 100  # stage 1 (reconstruction) epochs before stage 2 (BPR); 0 = BPR only (official: 500)
    ae_warmup: int = 1000  # stage 1's Noam schedule: warm-up steps (official n_warmup_steps); 0 = the run's lr
    adam_beta2: float = 0.99  # official Adam betas (0.9, 0.99) and eps 1e-9, both stages
    adam_eps: float = 1e-9
    ae_negatives: int = 30  # sampled-softmax negatives per position (stage 1)
    bpr_negatives: int = 5  # BPR negatives per position (stage 2)
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position encodings ``[length, dim]`` (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * rate)
    out[:, 1::2] = torch.cos(pos * rate)[:, : dim // 2]
    return out


def noam(step: int, d_model: int, warmup: int) -> float:
    """Noam learning rate (Vaswani et al.; RecGURU's ``ScheduledOptim``, factor 1) of 1-based ``step``:
    d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), rising linearly to its peak at ``warmup``."""
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Stage 1: mean over valid positions of -log softmax([pos, neg_1..neg_k])[0].

    ``pos`` ``[B, L]``, ``neg`` ``[B, L, k]``, ``valid`` ``[B, L]`` bool.
    """
    logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1)
    nll = -F.log_softmax(logits, dim=-1)[..., 0]
    return nll[valid].mean()


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Stage 2: mean over valid positions and negatives of -log sigmoid(pos - neg)."""
    per = -F.logsigmoid(pos.unsqueeze(-1) - neg).mean(dim=-1)
    return per[valid].mean()


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to one user vector, FFN (post-LN, as the encoder)."""

    def __init__(self, c: RecGURUConfig):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(c.hidden, c.heads, dropout=c.attn_dropout, batch_first=True)
        # attention over a single memory vector has weight 1: it reduces to out_proj(value(memory))
        self.cross_value = nn.Linear(c.hidden, c.hidden)
        self.cross_out = nn.Linear(c.hidden, c.hidden)
        self.ffn = nn.Sequential(nn.Linear(c.hidden, c.inner), nn.GELU(), nn.Linear(c.inner, c.hidden))
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(c.hidden, eps=c.layer_norm_eps) for _ in range(3))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, causal: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        a, _ = self.self_attn(x, x, x, attn_mask=causal, key_padding_mask=pad, need_weights=False)
        x = self.ln1(x + self.drop(a))
        x = self.ln2(x + self.drop(self.cross_out(self.cross_value(memory))).unsqueeze(1))
        return self.ln3(x + self.drop(self.ffn(x)))


class RecGURU(SeqRecModel):
    name = "recguru"

    def __init__(self, n_items: int, config: RecGURUConfig):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.eos = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, c.hidden, padding_idx=PAD)  # 0 pad, 1..n items, n+1 EOS
        self.register_buffer("positions", sinusoid(c.max_len + 2, c.hidden), persistent=False)
        self.encoder = TransformerEncoder(c.layers, c.hidden, c.heads, c.inner, c.dropout, c.attn_dropout,
                                          c.layer_norm_eps)
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.layers))  # the autoencoder's (stage 1)
        self.recommender = nn.ModuleList(DecoderLayer(c) for _ in range(c.layers))  # stage 2 and evaluation
        self.drop = nn.Dropout(c.dropout)
        self.stage = 2 if c.ae_epochs == 0 else 1
        self.apply(lambda m: init_weights(m, c.init_std))

    # -- the two halves ------------------------------------------------------------------
    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.item_emb(tokens) * math.sqrt(self.hidden) + self.positions[: tokens.shape[1]]
        return self.drop(x)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """User vectors ``[B, hidden]``: the encoder state at the EOS appended after each row's items."""
        lengths = (tokens > PAD).sum(dim=1)
        with_eos = F.pad(tokens, (0, 1))
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        with_eos[rows, lengths] = self.eos
        # the last layer only at the EOS rows (the same math, without the other positions' outputs)
        return self.encoder(self._embed(with_eos), attention_mask(with_eos, causal=False), query=lengths)

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
        """States ``[B, L, hidden]`` of decoder ``layers`` on right-padded ``tokens`` given user vectors ``memory``."""
        L = tokens.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=tokens.device).triu(1)  # True = may NOT attend
        pad = tokens == PAD
        pad[:, 0] = False  # an all-padding row attends to its first slot (its outputs are ignored)
        x = self._embed(tokens)
        for layer in layers:
            x = layer(x, memory, causal, pad)
        return x

    # -- SeqRecModel -----------------------------------------------------------------------
    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(tokens, self.encode(tokens), self.recommender)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]

    def start_epoch(self, epoch: int) -> bool:
        """Stage 1 (reconstruction) for the first ``ae_epochs`` epochs (1-based), then stage 2 (BPR);
        True at the first BPR epoch after a reconstruction stage."""
        self.stage = 1 if epoch <= self.config.ae_epochs else 2
        return epoch == self.config.ae_epochs + 1 and self.config.ae_epochs > 0

    def optimizer_options(self) -> dict:
        return {"betas": (0.9, self.config.adam_beta2), "eps": self.config.adam_eps}

    def learning_rate(self, step: int, lr: float) -> float:
        """Stage 1 with ``ae_warmup``: the official Noam schedule (:func:`noam`); stage 2: the run's ``lr``."""
        if self.stage == 1 and self.config.ae_warmup > 0:
            return noam(step, self.hidden, self.config.ae_warmup)
        return lr

    def validates(self, epoch: int) -> bool:
        """Only the recommendation stage is validated (the official code evaluates in the BPR stage; before it
        the recommender decoder is untrained), so the reconstruction stage always runs its ``ae_epochs``."""
        return epoch > self.config.ae_epochs

    def make_instances(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One instance per user: the last ``max_len + 1`` training items (right-padded); no targets."""
        keep = [np.asarray(s, dtype=np.int64)[-(self.config.max_len + 1):] for s in sequences if len(s) >= 2]
        tokens = np.zeros((len(keep), self.config.max_len + 1), dtype=np.int64)
        for row, s in enumerate(keep):
            tokens[row, : s.shape[0]] = s + 1
        return tokens, np.zeros(len(keep), dtype=np.int64)

    def batch_loss(self, tokens: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Next-item loss at every position of the shifted sequence (stage 1 or 2, see module doc): the mean
        over the batch's positions, computed per length bucket (rows are independent; most are ~5 items
        long, padded to ``max_len + 1``)."""
        total, count = 0.0, 0
        for rows in length_buckets(tokens):
            loss, n = self._bucket_loss(trim(tokens[rows]), rng)
            total, count = total + loss * n, count + n
        return total / count

    def _bucket_loss(self, tokens: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """(mean loss over the valid positions, their number) of right-padded rows ``tokens``."""
        lengths = (tokens > PAD).sum(dim=1)
        width = tokens.shape[1]
        memory = self.encode(tokens)  # the autoencoder reads the whole sequence
        if self.stage == 2:
            memory = memory.detach()  # fix_enc
        cols = torch.arange(width, device=tokens.device)[None]
        inputs = tokens.masked_fill(cols >= (lengths - 1)[:, None], PAD)[:, : width - 1]  # drop each last item
        nxt = tokens[:, 1:]  # the item after each input position
        valid = inputs > PAD
        states = self.decode(inputs, memory, self.decoder if self.stage == 1 else self.recommender)
        table = self.item_emb.weight
        pos = (states * table[nxt]).sum(-1)
        k = self.config.ae_negatives if self.stage == 1 else self.config.bpr_negatives
        neg_items = torch.as_tensor(rng.integers(1, self.n_items + 1, size=(*nxt.shape, k)), device=tokens.device)
        neg = torch.einsum("bld,blkd->blk", states, table[neg_items])
        loss = sampled_softmax_loss(pos, neg, valid) if self.stage == 1 else bpr_loss(pos, neg, valid)
        return loss, int(valid.sum())
