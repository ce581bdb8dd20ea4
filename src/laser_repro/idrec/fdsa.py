"""FDSA (Zhang et al., 2019): feature-level deeper self-attention, as in RecBole.

Two causal self-attention streams over the history: one over item-ID embeddings, one over the
items' features. Here the feature of an item is its text embedding from a frozen text encoder
(:mod:`laser_repro.idrec.text_features`), projected to the hidden size. The two last-layer
states are concatenated and mapped back to the hidden size; cross-entropy over all items.
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
class FDSAConfig:
    RANGES: ClassVar[dict[str, Range]] = MODEL_RANGES
    check = check_heads

    hidden: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256
    max_len: int = 50
    dropout: float = 0.5  # RecBole FDSA default
    attn_dropout: float = 0.5
    text_dim: int = 384  # width of the item-text features (MiniLM-L6: 384; BERT-base [CLS]: 768)
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02


class FDSA(SeqRecModel):
    name = "fdsa"
    features = ("text_features",)  # the trainer passes item-text features

    def __init__(self, n_items: int, config: FDSAConfig, text_features: torch.Tensor | None = None):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        feats = torch.zeros(n_items + 1, c.text_dim)
        if text_features is not None:
            if tuple(text_features.shape) != (n_items, c.text_dim):
                raise ValueError(
                    f"FDSA text features have shape {tuple(text_features.shape)}, expected ({n_items}, {c.text_dim}) "
                    "(model_config.text_dim must match the text encoder's width)"
                )
            feats[1:] = text_features.float()
        self.register_buffer("text_features", feats)  # row 0 = padding
        self.item_emb = nn.Embedding(n_items + 1, c.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.hidden)
        self.feat_proj = nn.Linear(c.text_dim, c.hidden)
        self.ln = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)  # RecBole's one LayerNorm: both inputs and the output
        self.dropout = nn.Dropout(c.dropout)
        args = (c.layers, c.hidden, c.heads, c.inner, c.dropout, c.attn_dropout, c.layer_norm_eps)
        self.item_encoder = TransformerEncoder(*args)
        self.feat_encoder = TransformerEncoder(*args)
        self.concat = nn.Linear(2 * c.hidden, c.hidden)
        self.apply(lambda m: init_weights(m, c.init_std))

    def _streams(self, tokens: torch.Tensor, query: torch.Tensor | None) -> torch.Tensor:
        pos = self.pos_emb(torch.arange(tokens.shape[1], device=tokens.device))[None]
        mask = attention_mask(tokens, causal=True)
        items = self.dropout(self.ln(self.item_emb(tokens) + pos))
        feats = self.dropout(self.ln(self.feat_proj(self.text_features[tokens]) + pos))
        both = torch.cat([self.item_encoder(items, mask, query), self.feat_encoder(feats, mask, query)], dim=-1)
        return self.dropout(self.ln(self.concat(both)))  # RecBole: concat_layer -> LayerNorm -> dropout

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._streams(tokens, None)

    def _last_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._streams(tokens, last_positions(tokens))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]
