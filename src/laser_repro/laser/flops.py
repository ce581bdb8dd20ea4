"""FLOP counts of a transformer pass, and model FLOP utilisation (MFU), for the speed benchmarks.

Forward FLOPs per token (Kaplan et al.'s convention): ``2 N`` for the matmuls of the N
non-embedding parameters, plus ``4 n_layers T d`` for the attention products QK^T and AV
(each ``2 T d`` per token and layer, T = sequence length, d = width). A frozen backbone's
backward pass computes activation gradients only (no weight gradients): about one more
forward, so a training step through it costs ``2 x`` the forward; a fully trained model ``3 x``.
"""

from __future__ import annotations

from torch import nn


def nonembedding_parameters(model: nn.Module) -> int:
    """Parameters outside the token (and learned position) embedding tables."""
    skip = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def dims(config) -> tuple[int, int]:
    """(layers, width) of a Hugging Face config (GPT-2, Llama, BERT, ChatGLM names)."""
    layers = next(getattr(config, k) for k in ("num_hidden_layers", "n_layer", "num_layers") if hasattr(config, k))
    width = next(getattr(config, k) for k in ("hidden_size", "n_embd") if hasattr(config, k))
    return int(layers), int(width)


def forward_flops_per_token(n_nonembedding: int, n_layers: int, width: int, seq_len: int) -> float:
    """``2 N + 4 n_layers T d``."""
    return 2.0 * n_nonembedding + 4.0 * n_layers * seq_len * width


def step_flops(tokens: int, per_token_forward: float, trained_weights: bool = False) -> float:
    """FLOPs of a training step over ``tokens``: forward + backward (activation grads, plus weight grads if trained)."""
    return tokens * per_token_forward * (3.0 if trained_weights else 2.0)


def mfu(flops: float, seconds: float, peak_flops_per_s: float) -> float:
    """Achieved FLOP/s as a share of ``peak_flops_per_s``."""
    return flops / seconds / peak_flops_per_s
