"""Atomic file output and small JSON helpers shared by every step.

Nothing a step computes is ever left half-written: every writer goes to a temporary
file in the destination's folder and is renamed into place only when complete. Files and
folders get the permissions the process's umask allows (as ``open``/``mkdir`` would), so a
group on a shared cluster can read results; JSON is strict (a NaN is an error, never written).
The new content is flushed to disk (fsync) before the rename, and the rename itself after it, so
a power loss or node crash leaves the old version or the new one, never an empty file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


class InputError(Exception):
    """Input the user must fix or provide (a model that cannot load, an unknown name): ``laser-repro`` prints the
    message alone, as it does for ``OSError`` and ``ValueError``, never a traceback."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: Path, directory: bool) -> None:
    """Give a mkstemp/mkdtemp result (0600/0700) the mode a plain open/mkdir would have."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


UNSYNCABLE = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.ENOSYS}  # no fsync for this kind of file here


def sync(path: Path) -> None:
    """Flush the file ``path`` to disk before it is renamed into place; a file system that cannot is let be (an
    error of the disk itself is raised: the rename then does not happen)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in UNSYNCABLE:
            raise
    finally:
        os.close(fd)


def sync_folder(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, as far as this file system and its permissions allow:
    the rename has happened, so a folder that cannot be opened or synced (no read permission on a shared drop
    folder, a file system without it) must not fail the write that made it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """:func:`sync` every file under ``folder`` and :func:`sync_folder` every folder, ``folder`` last."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            sync(Path(root) / name)
        for name in dirs:
            sync_folder(Path(root) / name)
    sync_folder(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        sync(tmp_path)  # while it is still the owner's 0600: readable whatever the umask
        _default_mode(tmp_path, directory=False)
        os.replace(tmp_path, path)
        sync_folder(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


TEMP_RANDOM = r"\.[a-z0-9_]{8}"  # the 8 random characters tempfile puts in the names atomic_path and atomic_dir make


def stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """The temporary files :func:`atomic_path` left in ``folder`` for ``names`` (a process killed mid-write
    leaves one: ``.{name}.{8 random characters}{suffix}.tmp``). Only the caller knows whether their writer
    is gone; a trainer holding its run's lock does."""
    pattern = re.compile(r"^\.(" + "|".join(re.escape(n) for n in names) + ")" + TEMP_RANDOM + r"(\.[A-Za-z0-9]+)?\.tmp$")
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if pattern.match(p.name) and p.is_file()) if folder.is_dir() else []


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` only on success.

    The caller decides whether an existing ``path`` may be replaced (see
    :func:`laser_repro.data.cli.check_out`); a file at ``path`` is replaced like a folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.exists() or path.is_symlink()):  # killed between the two renames of an earlier call (SIGKILL: no
        mine = re.compile(rf"\.{re.escape(path.name)}{TEMP_RANDOM}\.old")  # its own, not .pet.v2.*.old for pet
        left = sorted((p for p in path.parent.glob(f".{glob.escape(path.name)}.*.old") if mine.fullmatch(p.name)),
                      key=lambda p: p.lstat().st_mtime_ns)
        if left:  # finally ran): its previous version goes back before anything else
            os.replace(left[-1], path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        yield tmp
        _default_mode(tmp, directory=True)
        sync_tree(tmp)
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
        sync_folder(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None and (old.exists() or old.is_symlink()) and not (path.exists() or path.is_symlink()):
            os.replace(old, path)  # interrupted between the two renames: the previous version goes back
        elif old is not None and (old.exists() or old.is_symlink()):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    try:
        text = json.dumps(obj, indent=indent, sort_keys=False, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise ValueError(f"{path}: refusing to write non-finite numbers (NaN/inf) into JSON: {err}") from None
    write_text(path, text + "\n")


def read_yaml(path: str | os.PathLike, error: type[Exception] = ValueError, what: str = "YAML file") -> Any:
    """Read a YAML file; a missing file, bytes that are not UTF-8 and a YAML syntax error each name the file
    (``error`` is the caller's error class, ``what`` names the file's role in the message)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_keys_loader())  # noqa: S506 (a SafeLoader)
    except DuplicateKey as err:
        raise error(f"{path}:{err.line}: key {err.key!r} is given twice; keep one (YAML would keep the last "
                    "silently)") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected a UTF-8 {what}") from None
    except yaml.YAMLError as err:
        raise error(f"{path}: invalid YAML: {err}") from None


class DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        super().__init__(key, line)
        self.key, self.line = key, line


def _unique_keys_loader():
    """yaml's SafeLoader refusing a mapping that names a key twice (:class:`DuplicateKey`, with its line)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden on purpose
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise DuplicateKey(key, key_node.start_mark.line + 1)
                    seen.add(key)
                except TypeError:  # an unhashable key: yaml's own error names it
                    pass
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _non_finite(path: Path, text: str, name: str) -> float:
    """Refuse NaN/Infinity (not JSON; :func:`write_json` never writes them), naming the file and line."""
    hit = re.search(rf"[:\[,]\s*{re.escape(name)}", text)
    line = text.count("\n", 0, hit.end()) + 1 if hit else "?"
    raise ValueError(f"{path}:{line}: {name} is not a JSON number; expected a finite number")


def _unique_keys(path: Path) -> Any:
    """An ``object_pairs_hook`` that refuses a key given twice in one object (json keeps the last, silently)."""

    def build(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"{path}: key {key!r} appears twice in one object; expected each key once")
            out[key] = value
        return out

    return build


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a syntax error, a non-finite number (NaN, Infinity) or a key given twice in one object
    names the file (and the line, or the key)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text, parse_constant=lambda name: _non_finite(path, text, name),
                          object_pairs_hook=_unique_keys(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected a UTF-8 JSON file") from None
