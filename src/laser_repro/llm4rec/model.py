"""LLM4REC's model: a decoder LLM whose vocabulary gains one token per user and per item.

Two new embedding tables (N(0, 0.02)) extend the backbone's word embeddings; the item table is
also the item head (tied), so a state scores every item by a dot product. Prompts are lists of
pieces: text (the backbone's tokens), a user token or item tokens (:class:`Prompt`). With
``graph_bias``, the closed-form bias of :mod:`laser_repro.llm4rec.graph` is added to the attention
scores of every layer and head through a 4-D additive attention mask (no model fork).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from laser_repro.llm4rec.graph import ITEM, USER, WORD, additive_mask, prompt_bias


@dataclass
class Prompt:
    """One prompt as parallel lists: token id (word id, user index or item index), kind, LM label."""

    ids: list[int] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # word id to predict at this position (content LM), -100 = none

    def text(self, token_ids: list[int], predict: bool = False) -> "Prompt":
        """Word tokens; with ``predict`` the LM learns them (the content stage's main text), each from the position
        before it within the text, so its first token is no target (the official ContentGPT's shift; decisions)."""
        self.ids += token_ids
        self.kinds += [WORD] * len(token_ids)
        self.labels += (list(token_ids[1:]) + [-100] if token_ids else []) if predict else [-100] * len(token_ids)
        return self

    def user(self, u: int) -> "Prompt":
        return self._id(u, USER)

    def items(self, items) -> "Prompt":
        for i in items:
            self._id(int(i), ITEM)
        return self

    def _id(self, i: int, kind: int) -> "Prompt":
        self.ids.append(i)
        self.kinds.append(kind)
        self.labels.append(-100)
        return self


class LLM4Rec(nn.Module):
    def __init__(self, base: nn.Module, n_users: int, n_items: int, graph_bias: bool = True):
        super().__init__()
        self.base = base
        d = base.get_input_embeddings().embedding_dim
        self.user_emb = nn.Embedding(n_users, d)
        self.item_emb = nn.Embedding(n_items, d)
        nn.init.normal_(self.user_emb.weight, std=0.02)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        self.graph_bias = graph_bias
        self.n_users = n_users
        self.autocast = False  # bf16 autocast of the backbone (the trainer: CPU `precision`, always on CUDA)

    @property
    def device(self) -> torch.device:
        return self.item_emb.weight.device

    def batch(self, prompts: list[Prompt]) -> dict[str, torch.Tensor]:
        """Right-padded tensors: ids, kinds, labels, attention mask."""
        width = max(len(p.ids) for p in prompts)
        out = {k: torch.zeros(len(prompts), width, dtype=torch.long) for k in ("ids", "kinds", "mask")}
        out["labels"] = torch.full((len(prompts), width), -100, dtype=torch.long)
        for r, p in enumerate(prompts):
            n = len(p.ids)
            out["ids"][r, :n] = torch.as_tensor(p.ids)
            out["kinds"][r, :n] = torch.as_tensor(p.kinds)
            out["labels"][r, :n] = torch.as_tensor(p.labels)
            out["mask"][r, :n] = 1
        return {k: v.to(self.device) for k, v in out.items()}

    def states(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer states ``[B, L, d]`` (word, user and item embeddings; graph bias if on)."""
        ids, kinds = b["ids"], b["kinds"]
        words = self.base.get_input_embeddings()
        embeds = words(torch.where(kinds == WORD, ids, 0))
        embeds = torch.where((kinds == USER)[..., None], self.user_emb(torch.where(kinds == USER, ids, 0)), embeds)
        embeds = torch.where((kinds == ITEM)[..., None], self.item_emb(torch.where(kinds == ITEM, ids, 0)), embeds)
        nodes = torch.where(kinds == ITEM, ids + self.n_users, ids)
        bias = prompt_bias(kinds, nodes) if self.graph_bias else None
        mask = additive_mask(b["mask"], bias, embeds.dtype)
        positions = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids)
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.base(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state

    def last_states(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.states(b)
        return s[torch.arange(s.shape[0], device=s.device), b["mask"].sum(1) - 1]

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every item (the item head is the item table)."""
        return states.float() @ self.item_emb.weight.float().T

    def word_logits(self, states: torch.Tensor) -> torch.Tensor:
        return states.float() @ self.base.get_input_embeddings().weight.float().T
