"""RECFORMER's input: items written as key-value text, most recent first (Li et al., KDD'23, §2.1).

One item = up to three attributes in meta order (title, brand, category); each attribute is its
key's tokens (token type 1) followed by its value's tokens (type 2), the two together cut to
``max_attr_tokens``, with no separators (the official ``encode_item``). A sequence = the start token
(type 0), then the items most recent first, at most ``max_items`` items and ``max_tokens`` tokens
(older items that do not fit whole are dropped). Item positions as the official ``encode``: the start
token 0, the most recent item 1, the next 2, ...; padding has type 3 and item position ``max_items``.
An item alone (for the item table) is the start token plus that item (item position 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

ATTRIBUTES = ("title", "brand", "category")
TYPE_START, TYPE_KEY, TYPE_VALUE, TYPE_PAD = 0, 1, 2, 3


@dataclass
class Encoded:
    """One sequence: token ids, token types and item positions (equal lengths)."""

    input_ids: list[int]
    token_type_ids: list[int]
    item_position_ids: list[int]


class KeyValueTokenizer:
    """Key-value item text for a Hugging Face tokenizer (RoBERTa BPE at paper scale, MiniLM offline)."""

    def __init__(self, tokenizer: Any, items: Sequence[dict], max_items: int = 50, max_tokens: int = 1024,
                 max_attr_tokens: int = 32):
        self.tokenizer = tokenizer
        self.items = items
        self.max_items, self.max_tokens, self.max_attr_tokens = max_items, max_tokens, max_attr_tokens
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        if start is None or tokenizer.pad_token_id is None:
            raise ValueError("the RECFORMER tokenizer needs a start (<s>/[CLS]) and a padding token")
        self.start_id, self.pad_id = int(start), int(tokenizer.pad_token_id)
        self.key_ids = {k: self._ids(k) for k in ATTRIBUTES}
        self._cache: dict[int, tuple[list[int], list[int]]] = {}

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def item_tokens(self, item: int) -> tuple[list[int], list[int]]:
        """(token ids, token types) of one item's attributes, cached."""
        if item not in self._cache:
            meta, ids, types = self.items[item], [], []
            for key in ATTRIBUTES:  # an empty value keeps its key tokens (the official data always writes all three)
                value = str(meta.get(key) or "").strip()
                v = self._ids(value) if value else []
                ids += (self.key_ids[key] + v)[: self.max_attr_tokens]
                types += ([TYPE_KEY] * len(self.key_ids[key]) + [TYPE_VALUE] * len(v))[: self.max_attr_tokens]
            self._cache[item] = (ids, types)
        return self._cache[item]

    def encode(self, history: Sequence[int]) -> Encoded:
        """A user's history (item indices, oldest first) -> one RECFORMER sequence."""
        out = Encoded([self.start_id], [TYPE_START], [0])
        for position, item in enumerate(list(history)[::-1][: self.max_items]):
            ids, types = self.item_tokens(int(item))
            if len(out.input_ids) + len(ids) > self.max_tokens:
                break
            out.input_ids += ids
            out.token_type_ids += types
            out.item_position_ids += [position + 1] * len(ids)  # 0 is the start token's
        return out

    def batch(self, seqs: Sequence[Encoded], device: Any = "cpu") -> dict[str, torch.Tensor]:
        """Right-padded tensors plus the attention and global-attention (start token) masks."""
        width = max(len(s.input_ids) for s in seqs)
        shape = (len(seqs), width)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        types = np.full(shape, TYPE_PAD, dtype=np.int64)
        pos = np.full(shape, self.max_items, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        for r, s in enumerate(seqs):
            n = len(s.input_ids)
            ids[r, :n], types[r, :n], pos[r, :n], mask[r, :n] = s.input_ids, s.token_type_ids, s.item_position_ids, 1
        glob = np.zeros(shape, dtype=np.int64)
        glob[:, 0] = 1
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return {"input_ids": t(ids), "token_type_ids": t(types), "item_position_ids": t(pos),
                "attention_mask": t(mask), "global_attention_mask": t(glob)}
