"""The one processed format every later step reads.

A prepared data set is a folder::

    items.json         [{"id": original id, "title": str, "brand": str, "category": str}, ...]
                       list position = dense item index 0..n_items-1
    users.json         [original user id, ...]; list position = dense user index
    interactions.npz   offsets  int64 [n_users + 1]  user u's sequence is items[offsets[u]:offsets[u+1]]
                       items    int32 [n_interactions] dense item indices, each user's in time order
                       train_len int32 [n_users]     length of the training prefix
    stats.json         Table 1's columns, the source, the format version and the content
                       fingerprint (sha256 of items, users and interactions): run configs,
                       checkpoints and metrics.json record it, so a result never outlives its data;
                       a folder whose content no longer has it (edited by hand) is refused
    .laser-repro-dataset  marker: this folder was written by `laser-repro data prepare`

Leave-one-out split: validation item = sequence[train_len], test item =
sequence[train_len + 1]; a user whose sequence is shorter than 3 has
train_len = len(sequence) and no evaluation items (training only).
"""

from __future__ import annotations

import functools
import hashlib
import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from laser_repro.io import atomic_dir, read_json, write_json

FORMAT_VERSION = 1
ITEM_FIELDS = ("id", "title", "brand", "category")
MIN_EVAL_LEN = 3  # users with fewer items stay in training only
MARKER = ".laser-repro-dataset"


@dataclass(frozen=True)
class SeqDataset:
    """A prepared sequential-recommendation data set (see the module docstring)."""

    name: str
    items: list[dict]
    user_ids: list[str]
    offsets: np.ndarray
    flat: np.ndarray
    train_len: np.ndarray
    source: str = ""
    notes: tuple[str, ...] = ()  # what the import had to report (e.g. truncated histories)

    def with_notes(self, notes) -> "SeqDataset":
        return replace(self, notes=tuple(notes))

    # ---- sizes -------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return int(self.flat.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    # ---- per-user access -----------------------------------------------------------
    def sequence(self, u: int) -> np.ndarray:
        """User ``u``'s whole item sequence in time order."""
        return self.flat[self.offsets[u] : self.offsets[u + 1]]

    def train_sequence(self, u: int) -> np.ndarray:
        """The training part of user ``u``'s sequence."""
        return self.flat[self.offsets[u] : self.offsets[u] + self.train_len[u]]

    def history_and_target(self, u: int, split: str) -> tuple[np.ndarray, int]:
        """(input history, target item) for ``split`` in {"valid", "test"}.

        The validation input is the training part; the test input adds the validation item.
        """
        need = _need(split)
        start, n = int(self.offsets[u]), int(self.train_len[u])
        if int(self.lengths[u]) - n < need:  # a training-only user: the next user's items are not its target
            raise ValueError(f"{self.name}: user {u} has no {split} target (training only: {n} items)")
        return self.flat[start : start + n + need - 1], int(self.flat[start + n + need - 1])

    def eval_users(self, split: str = "test") -> np.ndarray:
        """Dense indices of users that have a ``split`` target."""
        return np.flatnonzero(self.lengths - self.train_len >= _need(split))

    def targets(self, split: str, users: np.ndarray | None = None) -> np.ndarray:
        """Target item of each user in ``users`` (default: all eval users) for ``split``."""
        need = _need(split)
        users = self.eval_users(split) if users is None else np.asarray(users)
        short = users[self.lengths[users] - self.train_len[users] < need]
        if short.size:
            raise ValueError(f"{self.name}: user {int(short[0])} has no {split} target (training only; "
                             f"{short.size} such users asked for)")
        return self.flat[self.offsets[users] + self.train_len[users] + need - 1].astype(np.int64)

    def train_item_counts(self) -> np.ndarray:
        """Number of training interactions of each item."""
        idx = np.repeat(np.arange(self.n_users), self.train_len)
        starts = self.offsets[:-1][idx]
        within = np.arange(idx.shape[0]) - np.repeat(np.cumsum(self.train_len) - self.train_len, self.train_len)
        return np.bincount(self.flat[starts + within], minlength=self.n_items)

    def item_text(self, i: int) -> dict:
        return self.items[i]

    # ---- identity ------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 of the content (item text, user ids, sequences, split), 16 hex digits."""
        h = hashlib.sha256()
        h.update(json.dumps([[it[k] for k in ITEM_FIELDS] for it in self.items], ensure_ascii=False).encode())
        h.update(json.dumps(list(self.user_ids)).encode())
        for arr in (self.offsets.astype(np.int64), self.flat.astype(np.int64), self.train_len.astype(np.int64)):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    # ---- Table 1 -----------------------------------------------------------------
    def stats(self) -> dict:
        """Table 1's columns: #users, #items, #interactions, avg n, density."""
        n_u, n_i, n_x = self.n_users, self.n_items, self.n_interactions
        return {
            "name": self.name,
            "source": self.source,
            "format_version": FORMAT_VERSION,
            "users": n_u,
            "items": n_i,
            "interactions": n_x,
            "avg_n": n_x / n_u if n_u else 0.0,
            "density": n_x / (n_u * n_i) if n_u and n_i else 0.0,
            "eval_users": int(self.eval_users("test").shape[0]),
            "fingerprint": self.fingerprint(),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def _need(split: str) -> int:
    """Items after the training part a user needs for a ``split`` target: 1 for "valid", 2 for "test"."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    return 1 if split == "valid" else 2


def from_sequences(
    name: str,
    source: str,
    items: list[dict],
    user_ids: Sequence[str],
    sequences: Sequence[Sequence[int]],
    train_lens: Sequence[int] | None = None,
) -> SeqDataset:
    """Build a data set from per-user item sequences (dense indices, time order).

    ``train_lens`` defaults to leave-one-out: len - 2 for users with at least 3 items,
    otherwise the whole sequence.
    """
    if len(user_ids) != len(sequences):
        raise ValueError(f"{name}: {len(user_ids)} user ids but {len(sequences)} sequences")
    if not sequences or not items:
        raise ValueError(f"{name}: empty data set ({len(sequences)} users, {len(items)} items)")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int32, count=int(offsets[-1]))
    if train_lens is None:
        train_len = np.where(lengths >= MIN_EVAL_LEN, lengths - 2, lengths).astype(np.int32)
    else:
        train_len = np.asarray(train_lens, dtype=np.int32)
    if flat.size and (flat.min() < 0 or flat.max() >= len(items)):
        bad = int(np.flatnonzero((flat < 0) | (flat >= len(items)))[0])
        user = int(np.searchsorted(offsets, bad, side="right") - 1)
        raise ValueError(f"{name}: user {user_ids[user]!r} has item index {int(flat[bad])}, out of range "
                         f"0..{len(items) - 1} ({len(items)} items have text)")
    for field in ITEM_FIELDS:
        missing = [k for k, it in enumerate(items) if field not in it]
        if missing:
            raise ValueError(f"{name}: item {missing[0]} has no {field!r} field")
    untitled = [k for k, it in enumerate(items) if not str(it["title"]).strip()]
    if untitled:
        k = untitled[0]
        raise ValueError(f"{name}: item {items[k]['id']!r} (index {k}) has no title ({len(untitled)} such items); "
                         "the paper's data keep only items with a title")
    return SeqDataset(name, list(items), [str(u) for u in user_ids], offsets, flat, train_len, source)


PREPARED_FILES = (MARKER, "items.json", "users.json", "interactions.npz", "stats.json")  # what save_dataset writes


def foreign_files(path: str | Path) -> list[str]:
    """Names in a prepared folder that :func:`save_dataset` did not write (re-preparing would delete them)."""
    return sorted(p.name for p in Path(path).iterdir() if p.name not in PREPARED_FILES)


def save_dataset(ds: SeqDataset, out_dir: str | Path) -> Path:
    """Write ``ds`` to ``out_dir`` atomically (the folder appears only when complete)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / MARKER).write_text("written by `laser-repro data prepare`; replaced only by it\n")
        write_json(tmp / "items.json", [{k: it[k] for k in ITEM_FIELDS} for it in ds.items], indent=None)
        write_json(tmp / "users.json", ds.user_ids, indent=None)
        np.savez(tmp / "interactions.npz", offsets=ds.offsets, items=ds.flat, train_len=ds.train_len)
        write_json(tmp / "stats.json", ds.stats())
    return out_dir


def is_prepared(path: str | Path) -> bool:
    """``path`` is a folder this suite prepared (its marker, or a stats.json with a format version)."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    try:
        return "format_version" in read_json(path / "stats.json")
    except (OSError, ValueError, TypeError):
        return False


TABLE1_STATS = ("users", "items", "interactions", "avg_n", "density")  # Table 1's columns, as stats.json names them
# stats.json's keys that readers rely on, with the JSON types :meth:`SeqDataset.stats` writes
STATS_TYPES: dict[str, tuple[type, ...]] = {"name": (str,), "users": (int,), "items": (int,), "interactions": (int,),
                                            "avg_n": (int, float), "density": (int, float), "fingerprint": (str,)}


def read_stats(folder: str | Path, keys: Sequence[str] = ()) -> dict:
    """``folder``/stats.json as a mapping that holds ``keys``, each key of :data:`STATS_TYPES` it holds of that
    type; a hand-edited or broken file is refused by file and key."""
    path = Path(folder) / "stats.json"
    stats = read_json(path)
    if not isinstance(stats, dict):
        raise ValueError(f"{path}: expected a JSON object of data set statistics, got {type(stats).__name__}")
    if absent := [k for k in keys if k not in stats]:
        raise ValueError(f"{path}: missing key(s) {absent}; re-run `laser-repro data prepare`")
    for key, types in STATS_TYPES.items():
        value = stats.get(key)
        if key in stats and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"{path}: {key} is {value!r}; expected {' or '.join(t.__name__ for t in types)}")
    return stats


class DataChanged(ValueError):
    """A prepared folder whose content is not the data its stats.json was written for (edited by hand)."""


CONTENT_FILES = ("items.json", "users.json", "interactions.npz", "stats.json")  # what the fingerprint covers


def data_fingerprint(path: str | Path) -> str:
    """The fingerprint of the prepared data set at ``path`` (:meth:`SeqDataset.fingerprint` of its content), checked
    against the one its stats.json recorded when `data prepare` wrote it: a folder changed since (a file edited or
    replaced by hand, or damaged) raises :class:`DataChanged`, so no result of the old data passes for one of the
    new. Where only stats.json is here (results copied without their data) its recorded fingerprint is all there
    is. Computed once per version of the folder's files in a process."""
    path = Path(path)
    versions = []
    for name in CONTENT_FILES:
        try:
            st = (path / name).stat()
            versions.append((st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size))
        except OSError:
            versions.append(None)
    recorded = read_stats(path).get("fingerprint")
    data_files = [v for name, v in zip(CONTENT_FILES, versions) if name != "stats.json"]
    if recorded is not None and all(v is None for v in data_files):  # stats.json alone: results without their data
        return recorded
    actual, error = _content_fingerprint(str(path.resolve()), tuple(versions))
    if error:
        raise DataChanged(f"{path}: {error}; prepare it again (the workflow does, once the folder is deleted)")
    if recorded is not None and recorded != actual:
        raise DataChanged(
            f"{path}: its items.json, users.json and interactions.npz are no longer the data its stats.json was "
            f"written for (fingerprint {actual}, recorded {recorded}): changed by hand since `laser-repro data "
            "prepare`. Prepare it again (the workflow does, once the folder is deleted); every result of the old "
            "data is then stale and reruns")
    return actual


@functools.lru_cache(maxsize=64)
def _content_fingerprint(path: str, versions: tuple) -> tuple[str, str]:
    """(fingerprint of the folder's content, '') or ('', why it cannot be read), per version of its files."""
    try:
        now, recorded = load_dataset(path).stats(), read_stats(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        return "", f"cannot be read as a prepared data set ({type(err).__name__}: {err})"
    # the counts Table 1 and the artifacts read from stats.json must be its data's
    edited = [f"{k} {recorded[k]!r} (its data: {now[k]!r})" for k in (*TABLE1_STATS, "eval_users")
              if k in recorded and recorded[k] != now[k]]
    if edited:
        return "", f"its stats.json says {', '.join(edited)}: edited by hand since `laser-repro data prepare`"
    return now["fingerprint"], ""


def load_dataset(path: str | Path) -> SeqDataset:
    """Load a prepared data set folder (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: no prepared data set here (expected a folder made by `laser-repro data prepare`)"
        )
    for f in ("items.json", "users.json", "interactions.npz", "stats.json"):
        if not (path / f).exists():
            raise FileNotFoundError(f"{path / f}: missing; re-run `laser-repro data prepare`")
    stats = read_stats(path, ["name"])
    if stats.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path / 'stats.json'}: format_version {stats.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    with np.load(path / "interactions.npz") as z:
        offsets, flat, train_len = z["offsets"], z["items"], z["train_len"]
    return SeqDataset(
        name=stats["name"],
        items=read_json(path / "items.json"),
        user_ids=read_json(path / "users.json"),
        offsets=offsets,
        flat=flat,
        train_len=train_len,
        source=stats.get("source", ""),
    )
