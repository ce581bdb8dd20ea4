"""RecFormer's released processed format (what most users of this paper already have).

A folder with ``train.json``, ``val.json``, ``test.json`` (``{user_idx: [item_idx, ...]}``),
``umap.json`` (``{user_id: user_idx}``), ``smap.json`` (``{item_id: item_idx}``) and item
text in ``meta_data.json`` (``{item_id: {title, brand, category}}``, or title-only
``{item_id: title}``) or ``meta.json`` (``{item_idx: {"input": [{title, brand, category}], ...}}``).
The given leave-one-out split is kept and checked: every user's validation and test parts hold
exactly one integer item index each, a test item needs a validation item (and the other way
round), and every user has training items. A folder of another protocol (e.g. val/test with
different users, as in user-split releases) is refused with the counts that show it.
"""

from __future__ import annotations

import re
from pathlib import Path

from laser_repro.data.dataset import MIN_EVAL_LEN, SeqDataset, from_sequences
from laser_repro.data.sources.text import clean_field
from laser_repro.io import read_json

REQUIRED = ("train.json", "val.json", "test.json", "umap.json", "smap.json")


def _dense_map(mapping: dict, path: Path) -> list[str]:
    """Invert ``{original_id: idx}`` into a list, checking the indices are 0..n-1."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: expected a JSON object {{original_id: index}}, got {type(mapping).__name__}")
    inv: list[str | None] = [None] * len(mapping)
    for orig, idx in mapping.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(mapping) or inv[idx] is not None:
            raise ValueError(f"{path}: index {idx!r} of {orig!r} is not a unique integer in 0..{len(mapping) - 1}")
        inv[idx] = orig
    return inv  # type: ignore[return-value]


def _split(path: Path, n_users: int, n_items: int, exactly_one: bool) -> dict[int, list[int]]:
    """``{user_idx: [item_idx, ...]}`` from a split file, every key and value checked."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{user_idx: [item_idx, ...]}}, got {type(data).__name__}")
    out = {}
    for key, items in data.items():
        if not (re.fullmatch(r"0|[1-9][0-9]*", key) and int(key) < n_users):  # "01" would be user 1 again
            raise ValueError(f"{path}: user key {key!r} is not a user index in 0..{n_users - 1} (umap.json)")
        if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise ValueError(f"{path}: user {key}: expected a list of integer item indices, got {items!r}"[:300])
        bad = [i for i in items if not 0 <= i < n_items]
        if bad:
            raise ValueError(f"{path}: user {key}: item index {bad[0]} out of range 0..{n_items - 1} (smap.json)")
        if exactly_one and len(items) != 1:
            raise ValueError(f"{path}: user {key}: expected exactly one item (leave-one-out), got {len(items)}: "
                             f"{items[:5]}")
        out[int(key)] = items
    return out


def _item_text(folder: Path, item_ids: list[str], unescape_html: bool) -> list[dict]:
    if (folder / "meta_data.json").exists():
        path = folder / "meta_data.json"
        meta = read_json(path)
        lookup = lambda idx, orig: meta.get(orig)  # noqa: E731
    elif (folder / "meta.json").exists():
        path = folder / "meta.json"
        meta = read_json(path)
        lookup = lambda idx, orig: meta.get(str(idx))  # noqa: E731
    else:
        raise FileNotFoundError(f"{folder}: expected item text in meta_data.json or meta.json")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by item, got {type(meta).__name__}")
    items = []
    for idx, orig in enumerate(item_ids):
        entry = lookup(idx, orig)
        if entry is None:
            raise ValueError(f"{path}: no text for item {orig!r} (index {idx})")
        if isinstance(entry, str):  # title-only meta: {item_id: title}
            entry = {"title": entry}
        if isinstance(entry, dict) and "input" in entry:
            if not isinstance(entry["input"], list):
                raise ValueError(f"{path}: item {orig!r}: 'input' is {type(entry['input']).__name__}; expected a "
                                 "list of objects with title/brand/category")
            entry = entry["input"][0] if entry["input"] else {}
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: item {orig!r}: expected a title string or an object with title/brand/"
                             f"category, got {type(entry).__name__}")
        where = f"{path}: item {orig!r}"
        title = clean_field(entry.get("title"), unescape_html, f"{where} title")
        if not title:
            raise ValueError(f"{path}: item {orig!r} (index {idx}) has no title; the paper's data keep only items "
                             "with a title")
        items.append({"id": orig, "title": title, "brand": clean_field(entry.get("brand"), unescape_html, f"{where} brand"),
                      "category": clean_field(entry.get("category"), unescape_html, f"{where} category")})
    return items


def prepare(input_path: str | Path, name: str, unescape_html: bool = True, **_: object) -> SeqDataset:
    """Read a RecFormer-format folder into a :class:`SeqDataset` (its split kept as given)."""
    folder = Path(input_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a RecFormer data folder with {', '.join(REQUIRED)}")
    for f in REQUIRED:
        if not (folder / f).exists():
            raise FileNotFoundError(f"{folder / f}: missing (a RecFormer folder has {', '.join(REQUIRED)})")
    user_ids = _dense_map(read_json(folder / "umap.json"), folder / "umap.json")
    item_ids = _dense_map(read_json(folder / "smap.json"), folder / "smap.json")
    n_u, n_i = len(user_ids), len(item_ids)
    train = _split(folder / "train.json", n_u, n_i, exactly_one=False)
    val = _split(folder / "val.json", n_u, n_i, exactly_one=True)
    test = _split(folder / "test.json", n_u, n_i, exactly_one=True)
    only_val, only_test = sorted(set(val) - set(test)), sorted(set(test) - set(val))
    if only_val or only_test:
        raise ValueError(
            f"{folder}: val.json and test.json must hold the same users (leave-one-out: each user's "
            f"second-to-last and last item); {len(val)} users in val.json, {len(test)} in test.json, "
            f"{len(set(val) & set(test))} in both (e.g. user {(only_val or only_test)[0]} is only in "
            f"{'val.json' if only_val else 'test.json'}). A user-split protocol is not supported")
    no_train = sorted(u for u in val if not train.get(u))
    if no_train:
        raise ValueError(f"{folder / 'train.json'}: user {no_train[0]} has validation/test items but no training "
                         f"items ({len(no_train)} such users); every evaluated user needs a history")
    unevaluated = [u for u in range(n_u) if u not in val and len(train.get(u, [])) >= MIN_EVAL_LEN]
    if unevaluated:  # leave-one-out evaluates every user with 3 items: a cut val/test file, not a protocol
        raise ValueError(f"{folder / 'val.json'}, {folder / 'test.json'}: user {user_ids[unevaluated[0]]!r} (index "
                         f"{unevaluated[0]}) has {len(train[unevaluated[0]])} training items but no validation or test "
                         f"item ({len(unevaluated)} such users); expected every user with at least {MIN_EVAL_LEN} "
                         "items in val.json and test.json (a damaged or cut release?)")
    empty = [u for u in range(n_u) if not train.get(u) and u not in val]
    if empty:  # counted in Table 1's users, average length and density, with nothing to train or test on
        raise ValueError(f"{folder / 'umap.json'}: user {user_ids[empty[0]]!r} (index {empty[0]}) has no item in "
                         f"train.json, val.json or test.json ({len(empty)} such users); expected every user to have "
                         "interactions")
    sequences, train_lens = [], []
    for u in range(n_u):
        seq = list(train.get(u, []))
        train_lens.append(len(seq))
        sequences.append(seq + val.get(u, []) + test.get(u, []))
    return from_sequences(name, "recformer", _item_text(folder, item_ids, unescape_html), user_ids, sequences, train_lens)
