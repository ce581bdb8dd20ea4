"""M-Former (paper §4.2, App. B): a mixture of query experts over a Q-Former-style stack.

Router on raw collaborative embeddings C (Eq. 4), top-k experts, each expert's L queries
pass through Z blocks that cross-attend to C' = Linear(C) (Eq. 5) every second block, the
outputs are aggregated with the router weights and projected to the LLM width: the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.laser.config import MFormerConfig


def router_weights(logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4/8: p = softmax(C W_r^T) per position; w_j = mean of p[:, j] over the N real positions.

    ``logits`` [B, N, K], ``mask`` [B, N] -> (w [B, K], p [B, N, K]).
    """
    p = logits.float().softmax(dim=-1)
    m = mask.to(p.dtype).unsqueeze(-1)
    w = (p * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return w, p


def select_experts(w: torch.Tensor, top_k: int, aggregation: str = "raw") -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k experts by w and their aggregation weights: (indices [B, k], weights [B, k]).

    ``raw`` keeps Eq. 4's weights (spec default); ``renormalize`` divides by their sum;
    ``softmax`` applies a second softmax over the selected weights (authors' code).
    """
    if top_k > w.shape[-1]:
        raise ValueError(f"mformer.top_k: {top_k} experts cannot be selected from n_experts = {w.shape[-1]}")
    top_w, top_i = w.topk(top_k, dim=-1)
    if aggregation == "raw":
        return top_i, top_w
    if aggregation == "renormalize":
        return top_i, top_w / top_w.sum(dim=-1, keepdim=True)
    if aggregation == "softmax":
        return top_i, top_w.softmax(dim=-1)
    raise ValueError(f"mformer.aggregation: expected raw|renormalize|softmax, got {aggregation!r}")


class Attention(nn.Module):
    """Multi-head attention with a BERT-style post-LayerNorm residual."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"mformer.d_model {d} is not divisible by mformer.n_heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, h, d // h).transpose(1, 2)

        mask = None if ctx_mask is None else ctx_mask.bool()[:, None, None, :]
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(ctx)), split(self.v(ctx)), mask, drop)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.norm(x + F.dropout(self.o(out), self.dropout, self.training))


class QFormerBlock(nn.Module):
    """Q-Former layer as in BLIP-2: self-attention, cross-attention to C' (if enabled), FFN."""

    def __init__(self, cfg: MFormerConfig, cross: bool):
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.cross_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout) if cross else None
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.intermediate), nn.GELU(), nn.Linear(cfg.intermediate, cfg.d_model))
        self.ff_norm = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.dropout = cfg.dropout

    def forward(self, q: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        q = self.self_attn(q, q)
        if self.cross_attn is not None:
            q = self.cross_attn(q, ctx, ctx_mask)  # Eq. 5
        return self.ff_norm(q + F.dropout(self.ff(q), self.dropout, self.training))


@dataclass
class MFormerOutput:
    prefix: torch.Tensor  # [B, L, d_llm]
    weights: torch.Tensor  # w [B, K] (Eq. 4)
    probs: torch.Tensor  # p [B, N, K] (Eq. 8)
    experts: torch.Tensor  # selected expert indices [B, k]


class MFormer(nn.Module):
    """K experts of L learnable queries (d_m), router W_r: d_c -> K (no bias), Z blocks."""

    def __init__(self, cfg: MFormerConfig, d_c: int, d_llm: int):
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(d_c, cfg.n_experts, bias=False)  # W_r in R^{K x d_c}
        self.queries = nn.Parameter(torch.randn(cfg.n_experts, cfg.n_queries, cfg.d_model) * cfg.query_init_std)
        self.query_norm = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.ctx_proj = nn.Linear(d_c, cfg.d_model)  # C' = Linear(C)
        freq = max(cfg.cross_attention_freq, 1)
        self.blocks = nn.ModuleList(QFormerBlock(cfg, cross=(z % freq == 0)) for z in range(cfg.n_layers))
        self.out_proj = nn.Linear(cfg.d_model, d_llm)  # aggregated queries -> LLM hidden size
        self.apply(_init_weights)

    def forward(self, c: torch.Tensor, mask: torch.Tensor) -> MFormerOutput:
        """``c`` [B, N, d_c] raw collaborative embeddings, ``mask`` [B, N] real positions."""
        b = c.shape[0]
        c = c.float()
        w, p = router_weights(self.router(c), mask)
        idx, agg = select_experts(w, self.cfg.top_k, self.cfg.aggregation)
        k = idx.shape[1]
        # [B, k, L, d_m]; index_select, not queries[idx]: the CPU backward of advanced indexing adds duplicate
        # indices across threads in no fixed order, so runs of one config would drift apart (index_add is ordered)
        q = self.query_norm(self.queries.index_select(0, idx.flatten()).view(*idx.shape, *self.queries.shape[1:]))
        q = F.dropout(q, self.cfg.dropout, self.training).flatten(0, 1)  # each expert runs separately
        ctx = self.ctx_proj(c).repeat_interleave(k, dim=0)
        ctx_mask = mask.repeat_interleave(k, dim=0)
        for block in self.blocks:
            q = block(q, ctx, ctx_mask)
        q = q.view(b, k, *q.shape[1:])
        pooled = (agg.to(q.dtype)[:, :, None, None] * q).sum(dim=1)  # sum_j w_j Q'_j
        return MFormerOutput(self.out_proj(pooled), w, p, idx)


def _init_weights(module: nn.Module) -> None:
    """BERT initialisation (normal 0.02, zero bias); the paper initialises randomly (App. B)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
