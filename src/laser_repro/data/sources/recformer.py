"""RecFormer's released processed format (what most users of this paper already have).

A folder with ``train.json``, ``val.json``, ``test.json`` (``{user_idx: [item_idx, ...]}``),
``umap.json`` (``{user_id: user_idx}``), ``smap.json`` (``{item_id: item_idx}``) and item
text in ``meta_data.json`` (``{item_id: {title, brand, category}}``) or ``meta.json``
(``{item_idx: {"input": [{title, brand, category}], ...}}``). The given split is kept.
"""

from __future__ import annotations

from pathlib import Path

from laser_repro.data.dataset import SeqDataset, from_sequences
from laser_repro.data.sources.text import clean_field
from laser_repro.io import read_json

REQUIRED = ("train.json", "val.json", "test.json", "umap.json", "smap.json")


def _dense_map(mapping: dict, path: Path) -> list[str]:
    """Invert ``{original_id: idx}`` into a list, checking the indices are 0..n-1."""
    inv: list[str | None] = [None] * len(mapping)
    for orig, idx in mapping.items():
        if not isinstance(idx, int) or not 0 <= idx < len(mapping) or inv[idx] is not None:
            raise ValueError(f"{path}: index {idx!r} of {orig!r} is not a unique integer in 0..{len(mapping) - 1}")
        inv[idx] = orig
    return inv  # type: ignore[return-value]


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
    items = []
    for idx, orig in enumerate(item_ids):
        entry = lookup(idx, orig)
        if entry is None:
            raise ValueError(f"{path}: no text for item {orig!r} (index {idx})")
        if isinstance(entry, dict) and "input" in entry:
            entry = entry["input"][0] if entry["input"] else {}
        items.append(
            {
                "id": orig,
                "title": clean_field(entry.get("title"), unescape_html),
                "brand": clean_field(entry.get("brand"), unescape_html),
                "category": clean_field(entry.get("category"), unescape_html),
            }
        )
    return items


def prepare(input_path: str | Path, name: str, unescape_html: bool = True, **_: object) -> SeqDataset:
    """Read a RecFormer-format folder into a :class:`SeqDataset` (its split kept as given)."""
    folder = Path(input_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a RecFormer data folder with {', '.join(REQUIRED)}")
    for f in REQUIRED:
        if not (folder / f).exists():
            raise FileNotFoundError(f"{folder / f}: missing (a RecFormer folder has {', '.join(REQUIRED)})")
    train, val, test = (read_json(folder / f) for f in ("train.json", "val.json", "test.json"))
    user_ids = _dense_map(read_json(folder / "umap.json"), folder / "umap.json")
    item_ids = _dense_map(read_json(folder / "smap.json"), folder / "smap.json")
    sequences, train_lens = [], []
    for u in range(len(user_ids)):
        key = str(u)
        seq = list(train.get(key, []))
        train_lens.append(len(seq))
        if key in val:
            seq += val[key]
            if key in test:
                seq += test[key]
        elif key in test:
            raise ValueError(f"{folder / 'test.json'}: user {key} has a test item but no validation item")
        sequences.append(seq)
    return from_sequences(name, "recformer", _item_text(folder, item_ids, unescape_html), user_ids, sequences, train_lens)
