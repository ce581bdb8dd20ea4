"""RecBole / UniSRec atomic files: the formats RecBole and UniSRec users keep their data in.

Two layouts, told apart by the files in the folder:

* **one interaction file** ``NAME.inter`` with a typed header (``user_id:token item_id:token
  timestamp:float``), item text in ``NAME.item`` (title / movie_title; brand / release_year;
  categories / class / genre columns) or UniSRec's ``NAME.text`` (``item_id:token text:token_seq``).
  Each user's interactions are sorted by timestamp, ties broken by item id (numeric when every id
  is numeric); the suite's leave-one-out split follows (MovieLens-100K in RecBole's release is this).
* **UniSRec's pre-split files** ``NAME.{train,valid,test}.inter`` (``user_id:token
  item_id_list:token_seq item_id:token``) with ``NAME.text``. A test row is (history, test item)
  and the history's last item is the validation item, so a user's sequence is the test row's list
  followed by its item, and the validation row must agree with it (checked). The valid and test lists
  are cut to UniSRec's last 50 items, so a user's training items are rebuilt from the train rows (one
  per training target, the first with the first item as its history): nothing is lost to the cut. A
  user without train rows (a single training item) is read from its validation row. Users found only
  in ``NAME.train.inter`` are training-only, rebuilt from their train rows likewise.
  ``NAME.item2index`` / ``NAME.user2index`` (original id -> index), when present, give the
  original ids.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from laser_repro.data.dataset import SeqDataset, from_sequences
from laser_repro.data.sources.text import clean_field

TYPES = ("token", "token_seq", "float", "float_seq")
TITLE, BRAND, CATEGORY = ("title", "movie_title", "text"), ("brand", "release_year", "year"), (
    "categories", "category", "class", "genre", "genres")
SPLITS = ("train", "valid", "test")


def read_atomic(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Field names (header ``name:type``, types checked) and ``(line number, fields)`` rows."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing RecBole atomic file")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if not header:
                raise ValueError(f"{path}:1: empty file, expected a tab-separated 'name:type' header")
            names = []
            for h in header:
                name, sep, typ = h.partition(":")
                if not sep or typ not in TYPES:
                    raise ValueError(f"{path}:1: header field {h!r} is not 'name:type' with a type of {list(TYPES)}")
                names.append(name)
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(names):
                    raise ValueError(f"{path}:{lineno}: expected {len(names)} tab-separated fields, got {len(row)}")
                rows.append((lineno, row))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    return names, rows


def column(names: list[str], wanted: tuple[str, ...], path: Path, required: bool = True) -> int | None:
    for w in wanted:
        if w in names:
            return names.index(w)
    if required:
        raise ValueError(f"{path}:1: no column named any of {list(wanted)} (header has {names})")
    return None


def id_key(ids):
    numeric = all(i.isdigit() for i in ids)
    return (lambda x: int(x)) if numeric else (lambda x: x)


def find_layout(folder: Path) -> tuple[str, str]:
    """(stem, "plain" | "presplit") of the atomic files in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder with RecBole atomic files (NAME.inter, or "
                                "NAME.train.inter + NAME.valid.inter + NAME.test.inter)")
    inters = sorted(p.name for p in folder.glob("*.inter"))
    split = {n.rsplit(".", 2)[0] for n in inters if n.endswith(tuple(f".{s}.inter" for s in SPLITS))}
    plain = sorted({n[: -len(".inter")] for n in inters} - {f"{s}.{x}" for s in split for x in SPLITS})
    if len(split) == 1 and not plain:
        stem = split.pop()
        missing = [f"{stem}.{s}.inter" for s in SPLITS if f"{stem}.{s}.inter" not in inters]
        if missing:
            raise FileNotFoundError(f"{folder}: pre-split files incomplete, missing {missing}")
        return stem, "presplit"
    if len(plain) == 1 and not split:
        return plain[0], "plain"
    raise FileNotFoundError(f"{folder}: expected exactly one NAME.inter or one NAME.{{train,valid,test}}.inter set, "
                            f"found {inters or 'no .inter file'}")


def item_text(folder: Path, stem: str, unescape_html: bool) -> dict[str, dict]:
    """``{item token: {id, title, brand, category}}`` from NAME.item or NAME.text."""
    item_path, text_path = folder / f"{stem}.item", folder / f"{stem}.text"
    path = item_path if item_path.exists() else text_path
    if not path.exists():
        raise FileNotFoundError(f"{folder}: item text missing: expected {item_path.name} or {text_path.name}")
    names, rows = read_atomic(path)
    iid = column(names, ("item_id",), path)
    ti, br, ca = (column(names, w, path, required=w is TITLE) for w in (TITLE, BRAND, CATEGORY))
    text = {}
    for lineno, r in rows:
        if r[iid] in text:
            raise ValueError(f"{path}:{lineno}: item {r[iid]!r} appears twice")
        text[r[iid]] = {"id": r[iid], "title": clean_field(r[ti], unescape_html, f"{path}:{lineno}: title"),
                        "brand": "" if br is None else clean_field(r[br], unescape_html),
                        "category": "" if ca is None else clean_field(r[ca], unescape_html)}
    return text


def _original_ids(folder: Path, stem: str, kind: str) -> dict[str, str]:
    """``{index token: original id}`` from UniSRec's NAME.{kind}2index (empty when absent)."""
    path = folder / f"{stem}.{kind}2index"
    if not path.exists():
        return {}
    out = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'original id<TAB>index'")
            if parts[1] in out:  # a second original id for one index would silently rename the first
                raise ValueError(f"{path}:{lineno}: index {parts[1]!r} appears twice (also for {out[parts[1]]!r}); "
                                 "expected one original id per index")
            out[parts[1]] = parts[0]
    return out


def _plain(folder: Path, stem: str, text: dict) -> tuple[list[str], list[list[str]], list[int] | None, list[str]]:
    path = folder / f"{stem}.inter"
    names, rows = read_atomic(path)
    cu, ci = column(names, ("user_id",), path), column(names, ("item_id",), path)
    ct = column(names, ("timestamp",), path, required=False)
    users: dict[str, list[tuple[float, int, str]]] = {}
    for lineno, r in rows:
        if r[ci] not in text:
            raise ValueError(f"{path}:{lineno}: item {r[ci]!r} has no text row ({stem}.item / {stem}.text)")
        try:
            t = float(r[ct]) if ct is not None else float(lineno)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: timestamp {r[ct]!r} is not a number") from None
        if not math.isfinite(t):  # nan compares false both ways: it scrambled the user's whole history order
            raise ValueError(f"{path}:{lineno}: timestamp {r[ct]!r} is not a finite number")
        users.setdefault(r[cu], []).append((t, lineno, r[ci]))
    if not users:
        raise ValueError(f"{path}: no interactions")
    key = id_key(list(text))
    user_ids = sorted(users, key=id_key(list(users)))
    seqs = [[i for _, _, i in sorted(users[u], key=lambda e: (e[0], key(e[2])))] for u in user_ids]
    return user_ids, seqs, None, []


def _extends(hist: list[str], vhist: list[str], vtarget: str) -> bool:
    """The test row (``hist``) = the validation row's history and item (either may be cut at the front)."""
    if not hist or hist[-1] != vtarget or len(vhist) < len(hist) - 1:
        return False
    return vhist[len(vhist) - (len(hist) - 1):] == hist[:-1]


def _presplit(folder: Path, stem: str, text: dict) -> tuple[list[str], list[list[str]], list[int], list[str]]:
    rows = {}
    for split in SPLITS:
        path = folder / f"{stem}.{split}.inter"
        names, data = read_atomic(path)
        cu, cl, ci = (column(names, w, path) for w in (("user_id",), ("item_id_list",), ("item_id",)))
        per_user: dict[str, list[tuple[int, list[str], str]]] = {}
        for lineno, r in data:
            for item in [*r[cl].split(), r[ci]]:
                if item not in text:
                    raise ValueError(f"{path}:{lineno}: item {item!r} has no text row ({stem}.text / {stem}.item)")
            per_user.setdefault(r[cu], []).append((lineno, r[cl].split(), r[ci]))
        rows[split] = (path, per_user)
    (vpath, valid), (tpath, test) = rows["valid"], rows["test"]
    for a, b, pa, pb in ((valid, test, vpath, tpath), (test, valid, tpath, vpath)):
        extra = sorted(set(a) - set(b))
        if extra:
            raise ValueError(f"{pa}: user {extra[0]!r} has no row in {pb.name} ({len(extra)} such users); "
                             "leave-one-out needs both a validation and a test row per evaluated user")
    train_path, train = rows["train"]
    sequences: dict[str, list[str]] = {}
    train_lens: dict[str, int] = {}
    for u, user_rows in test.items():
        if len(user_rows) != 1 or len(valid[u]) != 1:
            raise ValueError(f"{tpath if len(user_rows) != 1 else vpath}: user {u!r} has several rows "
                             "(leave-one-out: one validation and one test row per user)")
        (tline, hist, target), (vline, vhist, vtarget) = user_rows[0], valid[u][0]
        if not _extends(hist, vhist, vtarget):
            raise ValueError(f"{tpath}:{tline}: user {u!r}: the test history must end with the validation item "
                             f"of {vpath.name}:{vline} ({vtarget!r}) and continue that row's history")
        # the validation row keeps only the last 50 items (UniSRec's maximum length); the train rows hold the whole
        # training part
        seq = _rebuilt(train[u], train_path, u) if u in train else list(vhist)
        if len(seq) < len(vhist) or (vhist and seq[-len(vhist):] != vhist):
            raise ValueError(f"{vpath}:{vline}: user {u!r}: the validation history does not end the user's training "
                             f"items in {train_path.name}")
        sequences[u] = seq + [vtarget, target]
        train_lens[u] = len(seq)
    for u, user_rows in train.items():
        if u not in sequences:
            sequences[u] = _rebuilt(user_rows, train_path, u)
            train_lens[u] = len(sequences[u])
    user_ids = sorted(sequences, key=id_key(list(sequences)))
    return user_ids, [sequences[u] for u in user_ids], [train_lens[u] for u in user_ids], []


def _rebuilt(rows: list[tuple[int, list[str], str]], path: Path, user: str) -> list[str]:
    """A user's training items from UniSRec's train rows (one per training target, in file order, each with the
    items before its target cut to the last 50): the first row's history, then every row's target.
    A row whose history is not the items before its target is refused with its line."""
    seq = list(rows[0][1])
    for line, hist, target in rows:
        if not hist or len(hist) > len(seq) or seq[-len(hist):] != hist:
            raise ValueError(f"{path}:{line}: user {user!r}: the history does not continue the user's earlier rows "
                             "(UniSRec writes one row per training target, oldest first)")
        seq.append(target)
    return seq


def prepare(input_path: str | Path, name: str, dataset: str | None = None, unescape_html: bool = True,
            **_: object) -> SeqDataset:
    """Read RecBole atomic files (either layout, see the module docstring) from ``input_path``."""
    folder = Path(input_path)
    stem, layout = find_layout(folder) if dataset is None else (dataset, "plain")
    text = item_text(folder, stem, unescape_html)
    user_ids, seqs, train_lens, notes = (_presplit if layout == "presplit" else _plain)(folder, stem, text)
    key = id_key(list(text))
    used = sorted({i for s in seqs for i in s}, key=key)
    index = {i: k for k, i in enumerate(used)}
    item_names, user_names = _original_ids(folder, stem, "item"), _original_ids(folder, stem, "user")
    items = [{**text[i], "id": item_names.get(i, i)} for i in used]
    ds = from_sequences(name, "recbole", items, [user_names.get(u, u) for u in user_ids],
                        [[index[i] for i in s] for s in seqs], train_lens)
    return ds.with_notes(notes) if notes else ds
