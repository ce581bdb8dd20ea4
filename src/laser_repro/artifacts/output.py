"""Where artifacts write: a mark in every file they write, and a guard that never replaces a file
the suite did not write (a table or figure of the user's own at ``--out``)."""

from __future__ import annotations

import logging
from pathlib import Path

from laser_repro.io import write_text

log = logging.getLogger("laser_repro.artifacts")

MARK = "laser-repro artifact"  # in every markdown artifact (a comment) and figure (PNG/PDF metadata)
FIGURE_METADATA = {"png": {"Software": MARK}, "pdf": {"Creator": MARK}}
TRAILER = f"<!-- written by {MARK}; rebuild it rather than editing -->"  # a markdown artifact's last line
# The mark as each figure format stores it: a PNG tEXt chunk, a PDF info entry (not the phrase anywhere in the file)
FIGURE_MARKS = {".png": b"tEXtSoftware\x00" + MARK.encode(), ".pdf": f"/Creator ({MARK})".encode()}


def written_by_suite(path: Path) -> bool:
    """``path`` carries the mark exactly where this module writes it: a figure's metadata entry, or a markdown
    artifact's last line. A file that merely mentions the phrase (a README, notes) is not the suite's."""
    data = path.read_bytes()
    if path.suffix.lower() in FIGURE_MARKS:
        return FIGURE_MARKS[path.suffix.lower()] in data
    lines = data.decode("utf-8", errors="replace").rstrip().splitlines()
    return bool(lines) and lines[-1] == TRAILER


def guard_out(out: str | Path, force: bool = False) -> None:
    """Refuse to replace ``out`` (and a figure's PDF next to it) unless this suite wrote it or ``force``."""
    out = Path(out)
    paths = [out, out.with_suffix(".pdf")] if out.suffix.lower() == ".png" else [out]
    for path in paths:
        if path.is_dir():
            raise ValueError(f"--out {out}: {path} is a folder; give a file path")
        if not path.exists() or written_by_suite(path):
            continue
        if not force:
            raise ValueError(f"--out {out}: {path} exists and was not written by `laser-repro artifact` (no "
                             f"{MARK!r} mark); refusing to replace it. Choose another --out, or pass --force")
        log.warning("--force: replacing %s, which this suite did not write", path)


def write_markdown(out: str | Path, text: str) -> None:
    """Write a markdown artifact atomically, with the suite's mark as a trailing comment."""
    write_text(out, text.rstrip("\n") + f"\n\n{TRAILER}\n")
