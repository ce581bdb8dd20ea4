"""LLM4REC's graph attention bias in closed form, injected as an additive 4-D attention mask.

The official code adds M[node_i, node_j] to the scaled attention scores of every layer and head
wherever both tokens are ID tokens (word-token pairs get 0). M = minmax(A + T) with A the binary
user-item adjacency, d the hop distance and T = max(6 - d, 0) min-max normalised. When some pair
is at least 6 hops apart (any real data set), the values have a closed form (spec §4, derived):
an edge 1; self 6/11; 2 hops 4/11; 3 hops 3/11; 4 hops 2/11; 5 hops 1/11; farther 0.

In the prompts this port uses, every ID pair is a user and one of its own training items (an
edge), two items of one user's training history (2 hops, through that user) or a token with
itself, so the bias depends only on the token kinds and never needs all-pairs distances. The
graph is built from TRAINING edges only (the official code also uses validation and test edges).
"""

from __future__ import annotations

import torch

BIAS = {"edge": 1.0, "self": 6 / 11, 2: 4 / 11, 3: 3 / 11, 4: 2 / 11, 5: 1 / 11}
WORD, USER, ITEM = 0, 1, 2


def prompt_bias(kinds: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Bias ``[B, L, L]`` for prompts whose ID tokens are one user and items of that user's training
    history (``kinds`` ``[B, L]``: WORD / USER / ITEM per position; ``nodes`` ``[B, L]``: the graph node
    of each ID token, any value for words). Two positions of one node (a repeated item, the user
    named twice) are the node with itself."""
    user_q, item_q = (kinds == USER)[:, :, None], (kinds == ITEM)[:, :, None]
    user_k, item_k = (kinds == USER)[:, None, :], (kinds == ITEM)[:, None, :]
    L = kinds.shape[1]
    ids = (kinds != WORD)[:, :, None] & (kinds != WORD)[:, None, :]
    same = ids & (nodes[:, :, None] == nodes[:, None, :]) & ((user_q & user_k) | (item_q & item_k))
    edge = (user_q & item_k) | (item_q & user_k)
    two_hops = item_q & item_k & ~same
    out = torch.zeros(kinds.shape[0], L, L, device=kinds.device)
    out[edge] = BIAS["edge"]
    out[two_hops] = BIAS[2]
    out[same] = BIAS["self"]
    return out


def additive_mask(attention_mask: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D float mask ``[B, 1, L, L]`` a Hugging Face decoder accepts as ``attention_mask``:
    causal and padding positions at the dtype's minimum, allowed positions 0 plus ``bias``."""
    B, L = attention_mask.shape
    allowed = torch.ones(L, L, dtype=torch.bool, device=attention_mask.device).tril()[None] & attention_mask.bool()[:, None, :]
    allowed = allowed | torch.eye(L, dtype=torch.bool, device=attention_mask.device)[None]  # no empty rows
    out = torch.zeros(B, L, L, dtype=dtype, device=attention_mask.device)
    if bias is not None:
        out = out + bias.to(dtype)
    out = out.masked_fill(~allowed, torch.finfo(dtype).min)
    return out[:, None]
