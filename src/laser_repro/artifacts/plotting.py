"""Shared figure style and output: paper-size panels, error bars over seeds, PNG + PDF.

Figures are sized for the paper's two-column layout (6.8 in wide) with 8 pt text so they
stay readable when printed at that size; both files are written atomically.
"""

from __future__ import annotations

import itertools
import logging
import math
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402
import numpy as np  # noqa: E402

from laser_repro.io import atomic_path  # noqa: E402

from .output import FIGURE_METADATA  # noqa: E402
from .runs import run_notes  # noqa: E402
from .significance import SeedSummary  # noqa: E402

log = logging.getLogger("laser_repro.artifacts")

FULL_WIDTH_IN = 6.8  # ACL two-column text width
PANEL_HEIGHT_IN = 2.1
COLORS = {"laser-c": "#c0392b", "bert4rec": "#2c6fbb", "sasrec": "#27ae60", "gru4rec": "#8e44ad",
          "fdsa": "#d68910", "recformer": "#16a085", "recall@10": "#c0392b", "ndcg@10": "#2c6fbb", "mrr": "#27ae60"}
PALETTE = ("#c0392b", "#2c6fbb", "#27ae60", "#8e44ad", "#d68910", "#16a085", "#7f8c8d", "#e67e22")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # one per line series: lines stay apart in grey print


def colors_for(names: Sequence[str]) -> list[str]:
    """One color per series of a figure, no two alike: a method's (or metric's) own where it has one that no
    earlier series took, else the first palette color no series of the figure takes."""
    out: list[str | None] = []
    taken: set[str] = set()
    for name in names:
        c = COLORS.get(name)
        out.append(c if c not in taken else None)
        taken.add(c)
    taken.discard(None)
    free = itertools.cycle([c for c in PALETTE if c not in taken] or PALETTE)
    return [c if c is not None else next(free) for c in out]


STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
         "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False}


def new_figure(n_rows: int, n_cols: int, width: float = FULL_WIDTH_IN):
    """A figure of ``n_rows`` x ``n_cols`` panels at the paper's width, in the shared style."""
    plt.rcParams.update(STYLE)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, PANEL_HEIGHT_IN * n_rows + 0.45), squeeze=False)
    return fig, axes


def _ms(s: SeedSummary | None, scale: float) -> tuple[float, float]:
    if s is None or s.n == 0:
        return math.nan, 0.0
    return s.mean * scale, (0.0 if math.isnan(s.std) else s.std * scale)


def bar_panel(ax, groups: Sequence[str], series: Sequence[tuple[str, str, Sequence[SeedSummary | None]]],
              scale: float = 100.0) -> None:
    """Grouped bars (one group per label in ``groups``), error bars = std over seeds.

    ``series``: (legend label, color, one summary per group); missing values are marked 'n/a'.
    """
    with plt.rc_context(STYLE):
        x = np.arange(len(groups))
        width = 0.8 / max(len(series), 1)
        empty = all(s is None or s.n == 0 for _, _, ss in series for s in ss)
        for k, (label, color, summaries) in enumerate(series):
            ms = [_ms(s, scale) for s in summaries]
            pos = x - 0.4 + width * (k + 0.5)
            means = [0.0 if math.isnan(m) else m for m, _ in ms]
            errs = [e for _, e in ms]
            ax.bar(pos, means, width, yerr=errs if any(e > 0 for e in errs) else None, color=color, label=label,
                   capsize=2, error_kw={"elinewidth": 0.8})
            for p, (m, _) in zip(pos, ms):
                if math.isnan(m) and not empty:
                    ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(x, groups)
        if empty:
            _no_runs(ax)


def line_panel(ax, xlabels: Sequence[str], series: Sequence[tuple[str, str, Sequence[SeedSummary | None]]],
               scale: float = 100.0) -> None:
    """Lines over categorical x positions with error bars = std over seeds, one marker per series; a missing
    point is a gap in its line and an 'n/a' in the series' color at the panel's foot."""
    with plt.rc_context(STYLE):
        x = np.arange(len(xlabels))
        empty = all(s is None or s.n == 0 for _, _, ss in series for s in ss)
        foot = blended_transform_factory(ax.transData, ax.transAxes)
        for k, (label, color, summaries) in enumerate(series):
            ms = np.array([_ms(s, scale) for s in summaries])
            yerr = ms[:, 1] if (ms[:, 1] > 0).any() else None
            ax.errorbar(x, ms[:, 0], yerr=yerr, color=color, marker=MARKERS[k % len(MARKERS)], markersize=3,
                        capsize=2, linewidth=1.2, label=label)
            for xi in (x[np.isnan(ms[:, 0])] if not empty else []):
                ax.text(xi, 0.02 + 0.07 * (k % 4), "n/a", transform=foot, ha="center", va="bottom", fontsize=6,
                        color=color)  # stacked four high at most: the series' color tells them apart
        ax.set_xticks(x, xlabels)
        if empty:
            _no_runs(ax)


def _no_runs(ax) -> None:
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no runs found", transform=ax.transAxes, ha="center", va="center", color="#7f7f7f")


def note_missing(missing: Sequence, total: int) -> str:
    """A footnote saying how many requested runs are missing ("" if none); each is logged."""
    if not missing:
        return ""
    for p in missing:
        log.warning("missing run: %s", p)
    return (f"{len(missing)} of {total} requested runs missing, stale or unusable (each listed in the log and "
            "compare.md, with why); "
            "a point missing some seeds averages the seeds found")


def note_stand_ins(groups: Iterable) -> str:
    """A footnote naming the stand-in backbones behind the figure's run ``groups`` and the cells that ranked ties
    other than pessimistically ("" if neither); logged."""
    note = ". ".join(run_notes(groups))
    if note:
        log.warning("%s", note)
    return note


def save_figure(fig, out: str | Path, legend_ax=None, legend_title: str | None = None,
                n_seeds: int | None = None, footnotes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``out`` (PNG, 200 dpi) and the same name with .pdf, atomically.

    With ``legend_ax``, its legend is drawn once above all panels; ``footnotes`` (missing runs,
    stand-in backbones; empty ones skipped) are printed under the panels, one line each.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: --out must be a .png path (the PDF is written next to it)")
    pdf = out.with_suffix(".pdf")
    with plt.rc_context(STYLE):
        top = 1.0
        if legend_ax is not None:
            handles, labels = legend_ax.get_legend_handles_labels()
            fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, title=legend_title,
                       title_fontsize=7)
            top = 1.0 - (0.5 if legend_title else 0.3) / fig.get_figheight()
        note = "one seed: no error bars" if n_seeds == 1 else (
            f"error bars: ±1 sample std over {n_seeds or 'the'} seeds")
        width = int(fig.get_figwidth() * 22)  # characters of 6 pt text per line at this width
        lines = [note, *(line for f in footnotes if f for line in textwrap.wrap(f, width))]
        line = 8.5 / 72 / fig.get_figheight()  # one 6 pt line, as a fraction of the figure height
        for i, text in enumerate(reversed(lines)):
            fig.text(0.01, 0.005 + i * line, text, ha="left", va="bottom", fontsize=6, color="#7f7f7f")
        fig.tight_layout(rect=(0, 0.005 + len(lines) * line, 1, top))
        # both written before either replaces its old file: a failed save leaves the old PNG and PDF (only a
        # failed rename of the PNG, just after the PDF's, would leave a new PDF beside the old PNG)
        with atomic_path(out, suffix=".png") as png_tmp, atomic_path(pdf, suffix=".pdf") as pdf_tmp:
            fig.savefig(png_tmp, dpi=200, format="png", metadata=FIGURE_METADATA["png"])
            fig.savefig(pdf_tmp, format="pdf", metadata=FIGURE_METADATA["pdf"])
    plt.close(fig)
    return out, pdf
