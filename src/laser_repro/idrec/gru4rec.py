"""GRU4Rec (Hidasi et al., 2016; Tan et al.'s improved variant) as in RecBole.

Item embeddings -> dropout -> GRU -> Linear; the state at the last real position scores all
items against the item embedding table; cross-entropy over all items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from laser_repro.config import Range
from laser_repro.idrec.base import MODEL_RANGES, SeqRecModel, check_heads
from laser_repro.idrec.layers import init_weights


@dataclass
class GRU4RecConfig:
    RANGES: ClassVar[dict[str, Range]] = MODEL_RANGES
    check = check_heads

    hidden: int = 64  # embedding size = output state size (d_c when used as collaborative encoder)
    gru_hidden: int = 64  # GRU width (RecBole default 128; 64 = the suite's common width)
    layers: int = 1  # GRU layers (RecBole default)
    max_len: int = 50
    dropout: float = 0.3  # embedding dropout (RecBole default)
    init_std: float = 0.02


class GRU4Rec(SeqRecModel):
    name = "gru4rec"

    def __init__(self, n_items: int, config: GRU4RecConfig):
        super().__init__()
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        c = config
        self.item_emb = nn.Embedding(n_items + 1, c.hidden, padding_idx=0)
        self.dropout = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.hidden, c.gru_hidden, num_layers=c.layers, batch_first=True, bias=False)
        self.dense = nn.Linear(c.gru_hidden, c.hidden)
        self.apply(lambda m: init_weights(m, c.init_std))
        for name, p in self.gru.named_parameters():  # RecBole: xavier for GRU weights
            nn.init.xavier_uniform_(p)

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        # Right padding: a real position's state never depends on the padding after it.
        out, _ = self.gru(self.dropout(self.item_emb(tokens)))
        return self.dense(out)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]
