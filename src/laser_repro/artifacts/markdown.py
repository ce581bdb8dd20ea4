"""Small markdown helpers shared by the tables (pipe tables, cell markers, footnotes)."""

from __future__ import annotations

import math
from typing import Sequence

from .significance import SeedSummary


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub pipe table; ``align`` holds 'l', 'r' or 'c' per column (default: first left, rest right)."""
    align = list(align or ["l"] + ["r"] * (len(header) - 1))
    rule = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule[a] for a in align) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header {len(header)}: {row}")
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def mark(text: str, bold: bool = False, underline: bool = False, star: bool = False, dagger: bool = False,
         ddagger: bool = False) -> str:
    """Apply the paper's markers: **bold**, <u>underline</u>, a significance star, a stand-in dagger,
    and a double dagger for a run without the pre-training the paper's method had."""
    if text in ("", "—"):
        return text
    if underline:
        text = f"<u>{text}</u>"
    if bold:
        text = f"**{text}**"
    if star:
        text += "\\*"
    if dagger:
        text += "†"
    if ddagger:
        text += "‡"
    return text


def bullet_list(items: Sequence[str], empty: str = "none") -> str:
    return "\n".join(f"- {i}" for i in items) if items else f"- {empty}"


def fmt_pct(x: float, decimals: int = 2, signed: bool = True) -> str:
    if x != x:  # nan
        return "—"
    return f"{x:+.{decimals}f}%" if signed else f"{x:.{decimals}f}%"


def fmt_p(p: float) -> str:
    if p != p:
        return "—"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def fmt_mean_std(s: SeedSummary, scale: float = 1.0, decimals: int = 2, n_expected: int | None = None) -> str:
    """'13.11 ± 0.21' (std omitted for one seed; '(n=2)' when fewer seeds than requested)."""
    if s.n == 0 or math.isnan(s.mean):
        return "—"
    text = f"{s.mean * scale:.{decimals}f}"
    if s.n > 1:
        text += f" ± {s.std * scale:.{decimals}f}"
    if n_expected is not None and s.n < n_expected:
        text += f" (n={s.n})"
    return text
