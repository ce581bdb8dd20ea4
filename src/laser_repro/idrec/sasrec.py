"""SASRec (Kang & McAuley, 2018) as run by RecBole under UniSRec's settings.

Causal self-attention over the history; the state at the last real position scores all items
against the (shared) item embedding table; cross-entropy over all items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from laser_repro.config import Range
from laser_repro.idrec.base import MODEL_RANGES, SeqRecModel, last_positions, check_heads
from laser_repro.idrec.layers import TransformerEncoder, attention_mask, init_weights


@dataclass
class SASRecConfig:
    RANGES: ClassVar[dict[str, Range]] = MODEL_RANGES
    check = check_heads

    hidden: int = 64  # embedding = hidden size (UniSRec/RecFormer baselines)
    layers: int = 2  # transformer blocks
    heads: int = 2  # attention heads (32 per head)
    inner: int = 256  # FFN width (RecBole inner_size)
    max_len: int = 50  # most recent items read (MAX_ITEM_LIST_LENGTH)
    dropout: float = 0.5  # hidden dropout (RecBole SASRec default)
    attn_dropout: float = 0.5  # attention-probability dropout (RecBole SASRec default)
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02  # N(0, std) initialisation


class SASRec(SeqRecModel):
    name = "sasrec"

    def __init__(self, n_items: int, config: SASRecConfig):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.item_emb = nn.Embedding(n_items + 1, c.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.hidden)
        self.ln = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(c.layers, c.hidden, c.heads, c.inner, c.dropout, c.attn_dropout, c.layer_norm_eps)
        self.apply(lambda m: init_weights(m, c.init_std))

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        return self.dropout(self.ln(self.item_emb(tokens) + self.pos_emb(pos)[None]))

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._embed(tokens), attention_mask(tokens, causal=True))

    def _last_states(self, tokens: torch.Tensor) -> torch.Tensor:
        # only the last real position's output is needed: the top layer computes just that row
        return self.encoder(self._embed(tokens), attention_mask(tokens, causal=True), query=last_positions(tokens))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]
