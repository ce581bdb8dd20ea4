"""The text template (paper §4.1) and its Table 5 variants.

One template serves users and items: an item is a history of one item. Each history item
becomes a line ``\\n>> {i}. {title} (brand: {brand}, category: {category})``. By default the
category slot carries the BRAND, as in the paper's example and the authors' data (spec).
"""

from __future__ import annotations

from typing import Sequence

USER_INSTRUCTION = (
    "You are an intelligent recommendation assistant. Please summarize the user's characteristics "
    "into a single token based on the interaction history. In chronological order, the user has "
    "interacted with the following items:"
)
# Table 5 (1): the phrase "into a single token" deleted
NO_PHRASE_INSTRUCTION = USER_INSTRUCTION.replace(" into a single token", "")
# Table 5 (3): a separate instruction for items
ITEM_INSTRUCTION = (
    "You are an intelligent recommendation assistant. Please summarize the item characteristics "
    "into a single token:"
)
VARIANTS = ("paper", "no-phrase", "no-instruction", "two-instructions")


def item_line(position: int, item: dict, category_field: str = "brand") -> str:
    """One history line, ``position`` counted from 1."""
    return f"\n>> {position}. {item['title']} (brand: {item['brand']}, category: {item[category_field]})"


def instruction(variant: str, is_item: bool) -> str:
    """The instruction text before the item lines ('' for Table 5's no-instruction variant)."""
    if variant not in VARIANTS:
        raise ValueError(f"template.variant: expected one of {list(VARIANTS)}, got {variant!r}")
    if variant == "no-instruction":
        return ""
    if variant == "no-phrase":
        return NO_PHRASE_INSTRUCTION
    if variant == "two-instructions" and is_item:
        return ITEM_INSTRUCTION
    return USER_INSTRUCTION


def render(items: Sequence[dict], variant: str = "paper", category_field: str = "brand", is_item: bool = False) -> str:
    """The instruction text T of Eq. 1 for a history (or one item) of item records."""
    if category_field not in ("brand", "category"):
        raise ValueError(f"template.category_field: expected 'brand' or 'category', got {category_field!r}")
    text = instruction(variant, is_item) + "".join(
        item_line(k + 1, it, category_field) for k, it in enumerate(items)
    )
    return text.lstrip("\n") if variant == "no-instruction" else text
