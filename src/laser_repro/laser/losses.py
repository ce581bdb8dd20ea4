"""Laser's training objective (paper §4.3.1): L = L_IIC + lambda * L_LB (Eq. 10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """s(u, i) = cos(h_u, h_i) (Eq. 2) for every pair: [B, d] x [I, d] -> [B, I]."""
    return F.normalize(users.float(), dim=-1) @ F.normalize(items.float(), dim=-1).T


def iic_loss(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """Item-item contrastive loss over ALL items (Eq. 6), averaged over the batch.

    -log( exp(cos(h_u, h_i+)/tau) / sum_i exp(cos(h_u, h_i)/tau) ).
    """
    return F.cross_entropy(cosine_scores(users, items) / tau, targets.long())


def load_balancing_loss(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_LB = K * sum_j f_j w_j (Eqs. 7-9), pooled over every real position of the batch.

    ``probs`` [B, N, K] = softmax(C W_r^T) (Eq. 8); ``mask`` [B, N] marks real positions.
    w_j = mean of p[:, j] over the positions (Eq. 4); f_j = fraction of positions whose
    argmax expert is j (Eq. 9). f carries no gradient (argmax); w does.
    """
    k = probs.shape[-1]
    p = probs[mask.bool()]  # [P, K]
    if p.shape[0] == 0:
        return probs.sum() * 0.0
    w = p.mean(dim=0)
    f = F.one_hot(p.argmax(dim=-1), k).to(p.dtype).mean(dim=0)
    return k * (f * w).sum()


def total_loss(l_iic: torch.Tensor, l_lb: torch.Tensor | None, lb_weight: float) -> torch.Tensor:
    """L = L_IIC + lambda * L_LB (Eq. 10); without a router L = L_IIC."""
    return l_iic if l_lb is None else l_iic + lb_weight * l_lb
