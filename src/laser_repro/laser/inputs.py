"""Token ids for histories: rendered with the template, truncated to fit, cached.

Every training row, user and item is a history of item indices; its token ids are computed
once per run and reused every epoch (tokenisation is a noticeable share of a CPU step).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from laser_repro.laser import template


class HistoryTokens:
    """Maps an item-index history to backbone token ids (template, window, budget, cache).

    The items a text keeps (the window, less the oldest items the token budget drops) are also
    what the collaborative encoder reads (:meth:`kept`), so the two inputs always agree.
    """

    def __init__(self, items: list[dict], tokenize_many, variant: str, category_field: str, window: int, budget: int):
        self.items, self.tokenize_many = items, tokenize_many
        self.variant, self.category_field = variant, category_field
        self.window, self.budget = window, budget
        self._cache: dict[tuple, tuple[np.ndarray, tuple[int, ...]]] = {}

    def text(self, history: Sequence[int], is_item: bool = False) -> str:
        return template.render([self.items[i] for i in history], self.variant, self.category_field, is_item)

    def window_of(self, history: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(i) for i in history[-self.window :]) if self.window > 0 else tuple(int(i) for i in history)

    def _entries(self, histories: Sequence[Sequence[int]], is_item: bool) -> list[tuple[np.ndarray, tuple[int, ...]]]:
        keys = [(self.window_of(h), is_item) for h in histories]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if todo:
            texts = [self.text(k[0], is_item) for k in todo]
            for key, ids in zip(todo, self.tokenize_many(texts)):
                self._cache[key] = self._fit(key[0], ids, is_item)
        return [self._cache[k] for k in keys]

    def __call__(self, histories: Sequence[Sequence[int]], is_item: bool = False) -> list[np.ndarray]:
        """Token ids of each history's last ``window`` items (oldest items dropped to fit the budget)."""
        return [ids for ids, _ in self._entries(histories, is_item)]

    def kept(self, histories: Sequence[Sequence[int]], is_item: bool = False) -> list[tuple[int, ...]]:
        """The items each text shows: the window less what the budget dropped (the encoder's input)."""
        return [kept for _, kept in self._entries(histories, is_item)]

    def _fit(self, history: tuple[int, ...], ids: list[int], is_item: bool) -> tuple[np.ndarray, tuple[int, ...]]:
        while len(ids) > self.budget and len(history) > 1:
            history = history[1:]
            ids = self.tokenize_many([self.text(history, is_item)])[0]
        return np.asarray(ids[: self.budget], dtype=np.int32), history  # int32: the cache holds every row
