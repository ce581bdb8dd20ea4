"""Figure 5: Laser-C fed by different ID recommenders, against those recommenders.

ID model X reads ``{dataset}/X/main``; Laser-C with X reads ``{dataset}/laser-c/idrec~X``,
except the default ID recommender (BERT4Rec), whose Laser-C run is ``main``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .plotting import COLORS, bar_panel, new_figure, note_missing, save_figure
from .runs import LONG_LABELS, RunGroup, load_group
from .significance import SeedSummary

SPLIT = "test"
PLOT_METRICS = ("recall@10", "ndcg@10", "mrr")
NAMES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "gru4rec": "GRU4Rec", "fdsa": "FDSA"}


def laser_variant(idrec: str, default_idrec: str) -> str:
    return "main" if idrec == default_idrec else f"idrec~{idrec}"


@dataclass
class Fig5Data:
    datasets: list[str]
    idrecs: list[str]
    seeds: list[int]
    default_idrec: str
    groups: dict[tuple[str, str, str], RunGroup] = field(default_factory=dict)  # (dataset, 'id'|'laser', idrec)

    def summary(self, dataset: str, kind: str, idrec: str, metric: str) -> SeedSummary:
        return self.groups[(dataset, kind, idrec)].summary(SPLIT, metric)

    def missing(self) -> list[Path]:
        return [p for g in self.groups.values() for p in g.missing]


def compute_fig5(runs_root, datasets: Sequence[str], idrecs: Sequence[str], seeds: Sequence[int],
                 default_idrec: str = "bert4rec") -> Fig5Data:
    data = Fig5Data(list(datasets), list(idrecs), list(seeds), default_idrec)
    for d in datasets:
        for x in idrecs:
            data.groups[(d, "id", x)] = load_group(runs_root, d, x, "main", seeds)
            data.groups[(d, "laser", x)] = load_group(runs_root, d, "laser-c", laser_variant(x, default_idrec), seeds)
    return data


def plot_fig5(data: Fig5Data, out: str | Path) -> tuple[Path, Path]:
    fig, axes = new_figure(len(data.datasets), len(PLOT_METRICS))
    groups = [NAMES.get(x, x) for x in data.idrecs]
    for row, d in zip(axes, data.datasets):
        for ax, m in zip(row, PLOT_METRICS):
            series = [
                ("ID recommender alone", COLORS["bert4rec"], [data.summary(d, "id", x, m) for x in data.idrecs]),
                ("Laser-C with it", COLORS["laser-c"], [data.summary(d, "laser", x, m) for x in data.idrecs]),
            ]
            bar_panel(ax, groups, series)
            ax.set_title(f"{d.capitalize()}: {LONG_LABELS[m]}")
            ax.set_ylabel(f"test {LONG_LABELS[m]} (×100)")
    note_missing(fig, data.missing(), 2 * len(data.datasets) * len(data.idrecs) * len(data.seeds))
    return save_figure(fig, out, legend_ax=axes[0][0], n_seeds=len(data.seeds))


def main(args) -> str:
    """CLI entry (``laser-repro artifact fig5``)."""
    plot_fig5(compute_fig5(args.runs_root, args.datasets, args.idrecs, args.seeds, args.default_idrec), args.out)
    return args.out
