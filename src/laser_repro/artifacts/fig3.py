"""Figure 3: zero-shot and low-resource transfer (paper: Pet -> Scientific).

Laser-C pretrained on the source and trained on a fraction F of the target's training users
reads variant ``xfer~{source}-frac~{F}`` (F = 0: zero-shot); BERT4Rec trained on that fraction
reads ``frac~{F}``, and ``main`` for F = 1. RECFORMER is not implemented in this suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .plotting import COLORS, line_panel, new_figure, note_missing, save_figure
from .runs import LONG_LABELS, RunGroup, load_group
from .significance import SeedSummary

SPLIT = "test"
PLOT_METRICS = ("recall@10", "ndcg@10", "mrr")


def laser_variant(source: str, fraction: str) -> str:
    return f"xfer~{source}-frac~{fraction}"


def idrec_variant(fraction: str) -> str:
    return "main" if float(fraction) == 1.0 else f"frac~{fraction}"


def fraction_label(fraction: str) -> str:
    f = float(fraction)
    return "0\n(zero-shot)" if f == 0 else f"{f * 100:g}%"


@dataclass
class Fig3Data:
    dataset: str
    source: str
    fractions: list[str]
    seeds: list[int]
    groups: dict[tuple[str, str], RunGroup] = field(default_factory=dict)  # (method, fraction)

    def summary(self, method: str, fraction: str, metric: str) -> SeedSummary:
        return self.groups[(method, fraction)].summary(SPLIT, metric)

    def missing(self) -> list[Path]:
        return [p for g in self.groups.values() for p in g.missing]


def compute_fig3(runs_root, dataset: str, source: str, fractions: Sequence[str], seeds: Sequence[int]) -> Fig3Data:
    data = Fig3Data(dataset, source, [str(f) for f in fractions], list(seeds))
    for f in data.fractions:
        data.groups[("laser-c", f)] = load_group(runs_root, dataset, "laser-c", laser_variant(source, f), seeds)
        data.groups[("bert4rec", f)] = load_group(runs_root, dataset, "bert4rec", idrec_variant(f), seeds)
    return data


def plot_fig3(data: Fig3Data, out: str | Path) -> tuple[Path, Path]:
    fig, axes = new_figure(1, len(PLOT_METRICS))
    xl = [fraction_label(f) for f in data.fractions]
    for ax, m in zip(axes[0], PLOT_METRICS):
        series = [
            (f"Laser-C (pretrained on {data.source})", COLORS["laser-c"], [data.summary("laser-c", f, m) for f in data.fractions]),
            ("BERT4Rec (target data only)", COLORS["bert4rec"], [data.summary("bert4rec", f, m) for f in data.fractions]),
        ]
        line_panel(ax, xl, series)
        ax.set_xlabel(f"share of {data.dataset}'s training users")
        ax.set_ylabel(f"test {LONG_LABELS[m]} (×100)")
        ax.set_title(f"{data.dataset.capitalize()}: {LONG_LABELS[m]}")
    note_missing(fig, data.missing(), 2 * len(data.fractions) * len(data.seeds))
    return save_figure(fig, out, legend_ax=axes[0][0], legend_title="(RECFORMER: not implemented in this suite)",
                       n_seeds=len(data.seeds))


def main(args) -> str:
    """CLI entry (``laser-repro artifact fig3``)."""
    plot_fig3(compute_fig3(args.runs_root, args.dataset, args.source, args.fractions, args.seeds), args.out)
    return args.out
