"""Amazon Review 2018 raw files: ``{Category}_5.json(.gz)`` + ``meta_{Category}.json(.gz)``.

Rules (spec, Data): keep interactions whose item has metadata with a non-empty title; sort
each user's interactions stably by ``unixReviewTime`` (file order breaks ties); keep repeat
interactions; no user subsampling and no filter beyond the 5-core of the file. Users and
items get dense indices in sorted order of their original ids.
"""

from __future__ import annotations

import gzip
from collections import Counter
import json
import math
import zlib
from pathlib import Path
from typing import Iterator

from laser_repro.data.dataset import SeqDataset, from_sequences
from laser_repro.data.download import CATEGORIES
from laser_repro.data.sources.text import clean_field


def open_text(path: Path):
    """Open a plain or gzip-compressed text file (by magic bytes, not by name)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-blank line; a bad line or a damaged file
    (truncated gzip, not UTF-8) names the file and the line it reached."""
    lineno = 0
    with open_text(path) as fh:
        lines = iter(fh)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except (EOFError, gzip.BadGzipFile, zlib.error) as err:
                raise ValueError(f"{path}:{lineno + 1}: damaged or truncated gzip file ({err}); download it again "
                                 "(`laser-repro data download` resumes)") from None
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno + 1}: not UTF-8 text ({err.reason} at byte {err.start} of "
                                 "that line's block)") from None
            lineno += 1
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def find_files(folder: Path, category: str | None = None) -> tuple[Path, Path]:
    """Locate ``{Category}_5.json[.gz]`` and ``meta_{Category}.json[.gz]`` in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder with {{Category}}_5.json(.gz) and meta_{{Category}}.json(.gz)")
    reviews = sorted(p for p in folder.iterdir() if p.name.endswith(("_5.json", "_5.json.gz")))
    if category is not None:
        category = CATEGORIES.get(category, category)  # a paper name (pet), as `data download` and the config take
        reviews = [p for p in reviews if p.name.split("_5.json")[0] == category]
    if len(reviews) != 1:
        found = [p.name for p in reviews] or "none"
        raise FileNotFoundError(
            f"{folder}: expected exactly one {category or '{Category}'}_5.json(.gz) file, found {found}"
            + ("" if category else " (pass --category to choose)")
        )
    cat = reviews[0].name.split("_5.json")[0]
    for suffix in (".json.gz", ".json"):
        meta = folder / f"meta_{cat}{suffix}"
        if meta.exists():
            return reviews[0], meta
    raise FileNotFoundError(f"{folder}: missing meta_{cat}.json(.gz) for {reviews[0].name}")


def read_meta(path: Path, unescape_html: bool = True, dropped: Counter | None = None) -> dict[str, dict]:
    """``{asin: {title, brand, category}}`` for items with a non-empty title (first entry wins); ``dropped`` counts
    the records left out (``duplicate records``, ``items without a title``)."""
    dropped = Counter() if dropped is None else dropped
    meta: dict[str, dict] = {}
    for lineno, rec in iter_json_lines(path):
        asin = rec.get("asin")
        if not asin or not isinstance(asin, str):
            raise ValueError(f"{path}:{lineno}: 'asin' is {asin!r}; expected a non-empty string")
        if asin in meta:
            dropped["duplicate metadata records (the first kept)"] += 1
            continue
        title = clean_field(rec.get("title"), unescape_html, f"{path}:{lineno}: title")
        if not title:
            dropped["metadata records without a title"] += 1
            continue
        meta[asin] = {
            "id": asin,
            "title": title,
            "brand": clean_field(rec.get("brand"), unescape_html, f"{path}:{lineno}: brand"),
            "category": clean_field(rec.get("category"), unescape_html, f"{path}:{lineno}: category"),
        }
    return meta


def read_reviews(path: Path, keep: dict, dropped: Counter | None = None) -> dict[str, list[tuple[int, str]]]:
    """``{reviewerID: [(unixReviewTime, asin), ...]}`` in file order, for items in ``keep``; ``dropped`` counts the
    reviews of other items."""
    dropped = Counter() if dropped is None else dropped
    users: dict[str, list[tuple[int, str]]] = {}
    gone: set[str] = set()  # users with a dropped review
    for lineno, rec in iter_json_lines(path):
        try:
            user, asin, raw = rec["reviewerID"], rec["asin"], rec["unixReviewTime"]
        except (KeyError, TypeError):
            raise ValueError(f"{path}:{lineno}: expected reviewerID, asin and an integer unixReviewTime") from None
        # true, 1.9, "7" and Infinity were read as 1, 1, 7 and an OverflowError: each changes the order of a history
        if isinstance(raw, bool) or not (isinstance(raw, int) or isinstance(raw, float) and math.isfinite(raw)
                                         and raw.is_integer()):
            raise ValueError(f"{path}:{lineno}: unixReviewTime {raw!r}: expected an integer (seconds)")
        time = int(raw)
        if not (isinstance(user, str) and isinstance(asin, str)):  # sorted ids, dict keys: strings only
            raise ValueError(f"{path}:{lineno}: reviewerID {user!r} and asin {asin!r}: expected strings")
        if asin in keep:
            users.setdefault(user, []).append((time, asin))
        else:
            dropped["reviews of items without titled metadata"] += 1
            gone.add(user)
    dropped["users left without a review"] += len(gone - users.keys())
    return users


def prepare(
    input_path: str | Path, name: str, category: str | None = None, unescape_html: bool = True, **_: object
) -> SeqDataset:
    """Parse raw Amazon 2018 files in ``input_path`` into a :class:`SeqDataset`."""
    reviews_path, meta_path = find_files(Path(input_path), category)
    dropped: Counter = Counter()
    meta = read_meta(meta_path, unescape_html, dropped)
    users = read_reviews(reviews_path, meta, dropped)
    if not users:
        raise ValueError(f"{reviews_path}: no interaction left after dropping items without a title in {meta_path}")
    used = sorted({asin for events in users.values() for _, asin in events})
    index = {asin: i for i, asin in enumerate(used)}
    user_ids = sorted(users)
    sequences = []
    for u in user_ids:
        events = sorted(users[u], key=lambda e: e[0])  # stable: file order breaks ties
        sequences.append([index[asin] for _, asin in events])
    notes = [f"{reviews_path.name} + {meta_path.name}: dropped {n:,} {what}" for what, n in dropped.items() if n]
    ds = from_sequences(name, "amazon2018", [meta[a] for a in used], user_ids, sequences)
    return ds.with_notes(notes) if notes else ds
