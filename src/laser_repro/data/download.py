"""Download the paper's raw Amazon 2018 files (for users with a network).

Each file is fetched to ``{name}.part`` with HTTP range requests, so an interrupted
download resumes where it stopped; when complete it is renamed into place and its URL, size
and sha256 are recorded beside it (``.{name}.download.json``) and in ``downloads.json`` in the
output folder (the workflow's output: Snakemake removes it when a job fails, the marks stay).
A file already there that this command did not download is never replaced. A user who already
has the files points ``laser-repro data prepare --input`` at them instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from laser_repro.io import read_json, sync, sync_folder, write_json

log = logging.getLogger(__name__)

BASE = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
REVIEWS_URL = BASE + "/categoryFilesSmall/{category}_5.json.gz"
META_URL = BASE + "/metaFiles2/meta_{category}.json.gz"
# the paper's four data sets -> Amazon 2018 category file names
CATEGORIES = {
    "scientific": "Industrial_and_Scientific",
    "arts": "Arts_Crafts_and_Sewing",
    "pet": "Pet_Supplies",
    "games": "Video_Games",
}
CHUNK = 1 << 20


def category_name(name: str) -> str:
    """Accept a paper data set name (``pet``) or an Amazon category (``Pet_Supplies``)."""
    if name in CATEGORIES:
        return CATEGORIES[name]
    if name in CATEGORIES.values():
        return name
    raise ValueError(f"unknown category {name!r}; expected one of {sorted(CATEGORIES)} or {sorted(CATEGORIES.values())}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` when it exists."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and done:  # nothing left from byte `done` on: complete only if the file has that size
            total = _range_total(err.headers.get("Content-Range") if err.headers else None)
            if total is None:
                total = _remote_size(url, timeout)
            if total == done:
                return _publish(part, dest)
            raise OSError(f"{url}: the server refuses to resume {part} ({done} bytes; the file has "
                          f"{'an unknown size' if total is None else f'{total} bytes'}); delete it to download "
                          "again") from None
        raise OSError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise OSError(
            f"{url}: download failed ({err}); without a network, download the file elsewhere and "
            f"point `laser-repro data prepare --input` at the folder holding it"
        ) from None
    with response:
        resumed = done and response.status == 206
        if not resumed:
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as fh, tqdm(
            total=total, initial=done, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                fh.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise OSError(f"{url}: incomplete download ({part.stat().st_size} of {total} bytes); run again to resume")
    return _publish(part, dest)


def _publish(part: Path, dest: Path) -> Path:
    """Rename a complete download onto ``dest``, flushed to disk first (as :mod:`laser_repro.io` writes)."""
    sync(part)
    os.replace(part, dest)
    sync_folder(dest.parent)
    return dest


def _range_total(content_range: str | None) -> int | None:
    """The full size in a ``Content-Range`` header (``bytes */1024``, ``bytes 0-99/1024``); None if absent."""
    m = re.search(r"/(\d+)\s*$", content_range or "")
    return int(m.group(1)) if m else None


def _remote_size(url: str, timeout: float) -> int | None:
    """The file's size by a HEAD request (``Content-Length``); None when the server does not say."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            length = response.headers.get("Content-Length")
    except (urllib.error.URLError, OSError):
        return None
    return int(length) if length is not None and length.isdigit() else None


def download_mark(dest: Path) -> Path:
    """Where :func:`download_category` records a file it downloaded (beside it, not a workflow output)."""
    return dest.with_name(f".{dest.name}.download.json")


def download_category(category: str, out_dir: str | Path, base: str | None = None, progress: bool = True) -> dict:
    """Fetch the reviews and meta files of ``category`` into ``out_dir``; return the record.

    Files this command downloaded before (recorded beside them or in ``downloads.json``) with a matching
    size are not fetched again; a file there that it did not download is refused, never replaced.
    """
    category = category_name(category)
    out = Path(out_dir)
    record_path = out / "downloads.json"
    record = read_json(record_path) if record_path.exists() else {}
    urls = [REVIEWS_URL, META_URL]
    if base is not None:
        urls = [u.replace(BASE, base.rstrip("/")) for u in urls]
    for template in urls:
        url = template.format(category=category)
        dest = out / url.rsplit("/", 1)[1]
        mark = download_mark(dest)
        known = read_json(mark) if mark.exists() else record.get(dest.name)
        if dest.exists():
            if known and known.get("size") == dest.stat().st_size:
                log.info("%s: already downloaded (sha256 %s)", dest, known["sha256"][:12])
                record[dest.name] = known
                if not mark.exists():  # downloaded before marks were written: mark it now
                    write_json(mark, known)
                continue
            if not known:
                raise FileExistsError(
                    f"{dest}: already there, and not downloaded by `laser-repro data download` (no {mark.name} or "
                    f"entry in {record_path.name}); prepare from it with `laser-repro data prepare --input {out}`, "
                    "or move it away to download it")
            if "size" in known:  # the download completed and was recorded: a file of another size is not it
                raise FileExistsError(
                    f"{dest}: {dest.stat().st_size} bytes, not the {known['size']} bytes `laser-repro data download` "
                    f"recorded (sha256 {str(known.get('sha256'))[:12]}): changed or replaced since; move it away "
                    "to download it again (nothing was replaced)")
            log.warning("%s: its download was killed before it was recorded; downloading it again", dest)
        write_json(mark, {"url": url})  # ours from here on, even if killed before its size and sha256 are recorded
        fetch(url, dest, progress=progress)
        record[dest.name] = {"url": url, "size": dest.stat().st_size, "sha256": sha256_of(dest)}
        write_json(mark, record[dest.name])
        write_json(record_path, record)
        log.info("%s: %d bytes, sha256 %s", dest, record[dest.name]["size"], record[dest.name]["sha256"])
    write_json(record_path, record)
    return record
