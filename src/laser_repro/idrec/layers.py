"""Transformer encoder shared by SASRec, BERT4Rec and FDSA.

# Post-LN Transformer layer as in RecBole's ``TransformerEncoder`` (the code the paper's
# baseline numbers were produced with): attention -> dropout -> LayerNorm(x + .), then
# FFN(gelu) -> dropout -> LayerNorm(x + .).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(tokens: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean mask [B, 1, L, L] (True = may attend) for right-padded ``tokens`` (0 = pad).

    Keys must be real items (and not in the future when ``causal``). Each position may always
    attend to itself, so an all-padding row never produces NaN (its outputs are ignored).
    """
    L = tokens.shape[1]
    keep = (tokens > 0)[:, None, None, :].expand(-1, 1, L, L)
    if causal:
        keep = keep & torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()
    return keep | torch.eye(L, dtype=torch.bool, device=tokens.device)


class TransformerLayer(nn.Module):
    """One post-LN self-attention block (multi-head attention + position-wise FFN)."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, attn_dropout: float, eps: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.attn_dropout = heads, attn_dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ln_attn = nn.LayerNorm(hidden, eps=eps)
        self.ff_in = nn.Linear(hidden, inner)
        self.ff_out = nn.Linear(inner, hidden)
        self.ln_ff = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, L, H], ``mask`` [B, 1, L, L]; with ``query`` ([B] positions) only those rows' outputs, [B, 1, H]."""
        B, L, H = x.shape
        d = H // self.heads
        if query is None:
            q, k, v = self.qkv(x).view(B, L, 3, self.heads, d).permute(2, 0, 3, 1, 4)
            x_res = x
        else:  # same math as the full layer, restricted to one query row per sequence
            rows = torch.arange(B, device=x.device)
            x_res = x[rows, query][:, None]
            (w_q, w_kv), (b_q, b_kv) = self.qkv.weight.split([H, 2 * H]), self.qkv.bias.split([H, 2 * H])
            q = F.linear(x_res, w_q, b_q).view(B, 1, self.heads, d).transpose(1, 2)
            k, v = F.linear(x, w_kv, b_kv).view(B, L, 2, self.heads, d).permute(2, 0, 3, 1, 4)
            mask = mask[rows, :, query][:, :, None]
        p = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        x = self.ln_attn(x_res + self.dropout(self.attn_out(a.transpose(1, 2).reshape(B, -1, H))))
        return self.ln_ff(x + self.dropout(self.ff_out(F.gelu(self.ff_in(x)))))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerLayer`; returns the last layer's states."""

    def __init__(self, layers: int, hidden: int, heads: int, inner: int, dropout: float, attn_dropout: float, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(hidden, heads, inner, dropout, attn_dropout, eps) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        """Last layer's states [B, L, H]; with ``query`` ([B] positions) only those, [B, H]: the last
        layer then computes just that row (the other rows' outputs would be discarded)."""
        for layer in self.layers[:-1]:
            x = layer(x, mask)
        if query is None:
            return self.layers[-1](x, mask)
        return self.layers[-1](x, mask, query)[:, 0]


def init_weights(module: nn.Module, std: float) -> None:
    """RecBole/BERT init: N(0, std) for Linear/Embedding weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
