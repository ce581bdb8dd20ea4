"""Table 1: data set statistics, the paper's numbers beside ours, exact matches marked.

Ours are read from each prepared data set's ``stats.json`` (written by ``laser-repro data
prepare``) and rounded the paper's way: counts exact, avg n to 2 decimals, density as the
paper's one-digit mantissa ``1.3e-3``. A cell matches when the rounded strings are equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from laser_repro.data.dataset import CONTENT_FILES, TABLE1_STATS, DataChanged, data_fingerprint, read_stats
from laser_repro.paper.reported import Reported, load_reported

from .output import write_markdown
from .markdown import bullet_list, md_table

COLUMNS = TABLE1_STATS
HEADERS = ("#Users", "#Items", "#Inters.", "Avg. n", "Density")


def fmt_stat(column: str, value: float) -> str:
    """Format one statistic exactly as the paper rounds it."""
    if column in ("users", "items", "interactions"):
        return f"{int(value):,}"
    if column == "avg_n":
        return f"{value:.2f}"
    if column == "density":
        mant, _, exp = f"{value:.1e}".partition("e")
        return f"{mant}e{int(exp)}"
    raise ValueError(f"unknown Table 1 column {column!r}; expected one of {COLUMNS}")


@dataclass
class Table1Row:
    dataset: str
    paper: dict[str, str] | None  # printed strings, None when the paper has no such data set
    ours: dict[str, str] | None  # rounded strings, None when not prepared
    reason: str = ""  # why ``ours`` is None

    def match(self, column: str) -> bool | None:
        if self.paper is None or self.ours is None:
            return None
        return self.paper[column] == self.ours[column]

    @property
    def exact(self) -> bool | None:
        m = [self.match(c) for c in COLUMNS]
        return None if None in m else all(m)


def changed_by_hand(folder: Path) -> str:
    """Why the statistics in ``folder``/stats.json no longer describe its data ('' when they do, or when only
    stats.json is here, as on a machine that keeps results alone)."""
    if not all((folder / f).exists() for f in CONTENT_FILES):
        return ""
    try:
        data_fingerprint(folder)
    except DataChanged as err:
        return str(err)
    return ""


def compute_table1(data_dir: str | Path, datasets: Sequence[str], reported: Reported | None = None) -> list[Table1Row]:
    """One row per data set: paper's printed statistics and ours (or why ours are missing)."""
    reported = reported or load_reported()
    rows = []
    for name in datasets:
        cells = reported.table1(name)
        paper = {c: cells[c].text for c in COLUMNS} if cells else None
        stats_path = Path(data_dir) / name / "stats.json"
        if not stats_path.exists():
            rows.append(Table1Row(name, paper, None, f"not prepared: {stats_path} missing"))
            continue
        stats = read_stats(stats_path.parent, COLUMNS)
        if changed := changed_by_hand(stats_path.parent):
            rows.append(Table1Row(name, paper, None, changed))
            continue
        rows.append(Table1Row(name, paper, {c: fmt_stat(c, stats[c]) for c in COLUMNS}))
    return rows


def render_table1(rows: list[Table1Row], data_dir: str | Path) -> str:
    body = []
    for r in rows:
        paper = [r.paper[c] for c in COLUMNS] if r.paper else ["not in the paper"] + [""] * (len(COLUMNS) - 1)
        body.append([r.dataset.capitalize(), "paper", *paper])
        if r.ours is None:
            body.append(["", "ours", r.reason] + [""] * (len(COLUMNS) - 1))
        else:
            marks = {True: " ✓", False: " ✗", None: ""}
            body.append(["", "ours", *[r.ours[c] + marks[r.match(c)] for c in COLUMNS]])
    notes = [
        "✓ = equal to the paper as the paper rounds it (counts exact, Avg. n to 2 decimals, "
        "density to one significant digit); ✗ = different.",
        "Avg. n = #Inters. / #Users; Density = #Inters. / (#Users × #Items).",
        f"Ours: `{{data-dir}}/{{name}}/stats.json` written by `laser-repro data prepare` (data dir `{data_dir}`).",
    ]
    exact = [r.dataset for r in rows if r.exact]
    differ = [r.dataset for r in rows if r.exact is False]
    absent = [f"{r.dataset}: {r.reason}" for r in rows if r.ours is None]
    text = "# Table 1: statistics of the data sets\n\n"
    text += md_table(["Dataset", "", *HEADERS], body, ["l", "l"] + ["r"] * len(COLUMNS)) + "\n\n"
    text += bullet_list(notes) + "\n\n"
    text += f"Exact match with the paper: {', '.join(exact) or 'none'}. "
    text += f"Differs: {', '.join(differ) or 'none'}.\n\n"
    if absent:
        text += "Not prepared (no numbers of ours):\n\n" + bullet_list(absent) + "\n"
    return text


def make_table1(data_dir: str | Path, datasets: Sequence[str], out: str | Path) -> list[Table1Row]:
    rows = compute_table1(data_dir, datasets)
    write_markdown(out, render_table1(rows, data_dir))
    return rows


def main(spec, out: str) -> str:
    """CLI entry (``laser-repro artifact table1``)."""
    make_table1(spec.data_root, spec.datasets, out)
    return out
