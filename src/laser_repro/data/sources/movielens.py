"""MovieLens in RecBole's atomic format: ``{name}.inter`` and ``{name}.item``.

title = movie title, brand = release year, category = genres. Each user's interactions are
sorted by timestamp, ties broken by item id (numeric when all ids are numeric).
"""

from __future__ import annotations

import csv
from pathlib import Path

from laser_repro.data.dataset import SeqDataset, from_sequences
from laser_repro.data.sources.text import clean_field


def _read_atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header field names (without ``:type``) and rows of a tab-separated atomic file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing RecBole atomic file")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}:1: empty file, expected a 'name:type' header")
        names = [h.split(":")[0] for h in header]
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(names):
                raise ValueError(f"{path}:{lineno}: expected {len(names)} tab-separated fields, got {len(row)}")
            rows.append(row)
    return names, rows


def _column(names: list[str], wanted: tuple[str, ...], path: Path) -> int:
    for w in wanted:
        if w in names:
            return names.index(w)
    raise ValueError(f"{path}:1: no column named any of {list(wanted)} (header has {names})")


def _id_key(ids):
    numeric = all(i.isdigit() for i in ids)
    return (lambda x: int(x)) if numeric else (lambda x: x)


def _find_stem(folder: Path) -> str:
    """The ``{stem}`` of the single ``{stem}.inter`` file in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder with RecBole atomic files {{name}}.inter and {{name}}.item")
    stems = sorted(p.stem for p in folder.glob("*.inter"))
    if len(stems) != 1:
        raise FileNotFoundError(f"{folder}: expected exactly one *.inter file, found {stems or 'none'}")
    return stems[0]


def prepare(input_path: str | Path, name: str, dataset: str | None = None, unescape_html: bool = True, **_: object) -> SeqDataset:
    """Read ``{dataset}.inter`` + ``{dataset}.item`` from folder ``input_path``."""
    folder = Path(input_path)
    stem = dataset or _find_stem(folder)
    inter_path, item_path = folder / f"{stem}.inter", folder / f"{stem}.item"
    names, rows = _read_atomic(inter_path)
    cu, ci, ct = (_column(names, w, inter_path) for w in (("user_id",), ("item_id",), ("timestamp",)))
    inames, irows = _read_atomic(item_path)
    iid, ititle = _column(inames, ("item_id",), item_path), _column(inames, ("movie_title", "title"), item_path)
    iyear = _column(inames, ("release_year", "year"), item_path)
    igenre = _column(inames, ("class", "genre", "genres"), item_path)
    text = {
        r[iid]: {
            "id": r[iid],
            "title": clean_field(r[ititle], unescape_html),
            "brand": clean_field(r[iyear], unescape_html),
            "category": clean_field(r[igenre], unescape_html),
        }
        for r in irows
    }
    users: dict[str, list[tuple[float, str]]] = {}
    for lineno, r in enumerate(rows, start=2):
        if r[ci] not in text:
            raise ValueError(f"{inter_path}:{lineno}: item {r[ci]!r} has no row in {item_path}")
        try:
            users.setdefault(r[cu], []).append((float(r[ct]), r[ci]))
        except ValueError:
            raise ValueError(f"{inter_path}:{lineno}: timestamp {r[ct]!r} is not a number") from None
    if not users:
        raise ValueError(f"{inter_path}: no interactions")
    item_key = _id_key(list(text))
    used = sorted({i for ev in users.values() for _, i in ev}, key=item_key)
    index = {i: k for k, i in enumerate(used)}
    user_ids = sorted(users, key=_id_key(list(users)))
    sequences = [[index[i] for _, i in sorted(users[u], key=lambda e: (e[0], item_key(e[1])))] for u in user_ids]
    return from_sequences(name, "movielens", [text[i] for i in used], user_ids, sequences)
