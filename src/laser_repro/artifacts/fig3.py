"""Figure 3: zero-shot and low-resource transfer (paper: Pet -> Scientific).

The spec's ``methods`` start from their main run on the source and train on a fraction F of
the target's training users (variant ``xfer~{source}-frac~{F}``; F = 0: zero-shot); its
``baselines`` train on that fraction of the target only (``frac~{F}``, ``main`` for F = 1).
Variant names come from :mod:`laser_repro.experiment.layout` through the spec's cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laser_repro.experiment.specs import Fig3Spec

from .plotting import colors_for, line_panel, new_figure, note_missing, note_stand_ins, save_figure
from .runs import Gap, LONG_LABELS, RunGroup, label, load_cells
from .significance import SeedSummary

SPLIT = "test"
PLOT_METRICS = ("recall@10", "ndcg@10", "mrr")


def fraction_label(fraction: float) -> str:
    f = float(fraction)
    return "0\n(zero-shot)" if f == 0 else f"{f * 100:g}%"


@dataclass
class Fig3Data:
    dataset: str
    source: str
    methods: list[str]  # transferred from the source
    baselines: list[str]  # target data only
    fractions: list[float]
    seeds: list[int]
    groups: dict[tuple[str, float], RunGroup] = field(default_factory=dict)  # (method, fraction)

    def summary(self, method: str, fraction: float, metric: str) -> SeedSummary:
        return self.groups[(method, fraction)].summary(SPLIT, metric)

    def series_label(self, method: str) -> str:
        if method in self.methods:
            return f"{label(method)} (from {self.source})"
        return f"{label(method)} (target data only)"

    def missing(self) -> list[Gap]:
        return [p for g in self.groups.values() for p in g.missing]


def compute_fig3(spec: Fig3Spec) -> Fig3Data:
    data = Fig3Data(spec.dataset, spec.source, list(spec.methods), list(spec.baselines), list(spec.fractions),
                    list(spec.seeds))
    data.groups = load_cells(spec.runs_root, spec.cells(), spec.seeds, spec.stale)
    return data


def plot_fig3(data: Fig3Data, out: str | Path) -> tuple[Path, Path]:
    fig, axes = new_figure(1, len(PLOT_METRICS))
    xl = [fraction_label(f) for f in data.fractions]
    for ax, m in zip(axes[0], PLOT_METRICS):
        names = data.methods + data.baselines
        series = [(data.series_label(x), c, [data.summary(x, f, m) for f in data.fractions])
                  for x, c in zip(names, colors_for(names))]
        line_panel(ax, xl, series)
        ax.set_xlabel(f"share of {data.dataset}'s training users")
        ax.set_ylabel(f"test {LONG_LABELS[m]} (×100)")
        ax.set_title(f"{data.dataset.capitalize()}: {LONG_LABELS[m]}")
    notes = [note_missing(data.missing(), len(data.groups) * len(data.seeds)),
             note_stand_ins(data.groups.values())]
    return save_figure(fig, out, legend_ax=axes[0][0], n_seeds=len(data.seeds), footnotes=notes)


def main(spec: Fig3Spec, out: str) -> str:
    """CLI entry (``laser-repro artifact fig3``)."""
    plot_fig3(compute_fig3(spec), out)
    return out
