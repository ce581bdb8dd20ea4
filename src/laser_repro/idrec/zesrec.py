"""ZESRec (Ding et al., 2021): zero-shot recommenders from frozen language-model item features.

No official code exists; this follows the UniSRec-era reconstruction the spec recommends
(``shared/spec/baselines.md`` §2): each item's text (title, brand, category) is embedded once by a
frozen language model (:mod:`laser_repro.idrec.text_features`; BERT-base [CLS] at paper scale),
a universal item-embedding network maps it to an item embedding (two linear layers with no
activation between, after the input dropout of UniSRec's adaptor, which it replaces: the UniSRec
author, RUCAIBox/UniSRec issues #4 and #10, built ZESRec as that ablation and found that a
non-linear activation in this network lowers ZESRec markedly), and a SASRec-style
causal Transformer over the history's item embeddings gives the user state. Scores are dot
products with every item's embedding; cross-entropy over all items. No item-ID embedding
("text-only", as RecFormer groups it), so every weight transfers to another data set: a run
pre-trained on source data sets initialises the target run (``init_from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from laser_repro.config import Range
from laser_repro.idrec.base import MODEL_RANGES, SeqRecModel, check_heads, last_positions
from laser_repro.idrec.layers import TransformerEncoder, attention_mask, init_weights


def padded(text_features: torch.Tensor) -> torch.Tensor:
    """Item-text features with a zero row 0 (padding) in front, as fp32."""
    out = torch.zeros(text_features.shape[0] + 1, text_features.shape[1])
    out[1:] = text_features.float()
    return out


@dataclass
class ZESRecConfig:
    RANGES: ClassVar[dict[str, Range]] = MODEL_RANGES
    check = check_heads

    hidden: int = 300  # UniSRec: item / user width 300
    layers: int = 2
    heads: int = 2
    inner: int = 256
    max_len: int = 50
    dropout: float = 0.5
    attn_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02
    item_net: Literal["linear", "gelu"] = "linear"  # gelu: this suite's network before 2026-12-07 (see item_network)
    item_dropout: float = 0.2  # "linear": dropout on the text feature (UniSRec's adaptor_dropout_prob)


def item_network(text_dim: int, c: ZESRecConfig) -> nn.Sequential:
    """The universal item-embedding network: text feature -> item embedding of width ``hidden``.

    ``linear``: Dropout(item_dropout) -> Linear -> Linear (UniSRec's adaptor input dropout, no activation);
    ``gelu``: Linear -> GELU -> Dropout(dropout) -> Linear (what this suite ran until 2026-12-07)."""
    if c.item_net == "linear":
        return nn.Sequential(nn.Dropout(c.item_dropout), nn.Linear(text_dim, c.hidden), nn.Linear(c.hidden, c.hidden))
    return nn.Sequential(nn.Linear(text_dim, c.hidden), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, c.hidden))


class ZESRec(SeqRecModel):
    name = "zesrec"
    features = ("text_features",)  # the trainer passes item-text features

    def __init__(self, n_items: int, config: ZESRecConfig, text_features: torch.Tensor | None = None):
        super().__init__()
        if text_features is None or text_features.shape[0] != n_items:
            raise ValueError(f"ZESRec needs item-text features for all {n_items} items "
                             f"(got {None if text_features is None else tuple(text_features.shape)})")
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.register_buffer("text_features", padded(text_features))  # row 0 = padding; per data set, never transferred
        self.item_net = item_network(text_features.shape[1], c)
        self.pos_emb = nn.Embedding(c.max_len, c.hidden)
        self.ln = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(c.layers, c.hidden, c.heads, c.inner, c.dropout, c.attn_dropout,
                                          c.layer_norm_eps)
        self.apply(lambda m: init_weights(m, c.init_std))

    def use_items(self, text_features: torch.Tensor) -> None:
        """Switch to another data set's items (pre-training on source data sets): their text features."""
        if text_features.shape[1] != self.text_features.shape[1]:
            raise ValueError(f"text features of width {text_features.shape[1]}; this model reads "
                             f"{self.text_features.shape[1]} (use the same text_encoder for every data set)")
        self.text_features = padded(text_features).to(self.text_features.device)
        self.n_items = text_features.shape[0]

    def _items(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.item_net(self.text_features[tokens])

    def _encode(self, tokens: torch.Tensor, query: torch.Tensor | None) -> torch.Tensor:
        pos = self.pos_emb(torch.arange(tokens.shape[1], device=tokens.device))[None]
        x = self.dropout(self.ln(self._items(tokens) + pos))
        return self.encoder(x, attention_mask(tokens, causal=True), query)

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._encode(tokens, None)

    def _last_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._encode(tokens, last_positions(tokens))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_net(self.text_features[1:])
