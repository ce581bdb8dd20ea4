"""Figure 5: a method fed by different ID recommenders, against those recommenders alone.

Paper (§5.6.1): Laser-C fed by BERT4Rec against SASRec, on Pet; GRU4Rec and Scientific are this suite's
additions (docs/decisions.md). The spec's cells give,
per data set and ID model X, X's main run and the method's run fed by X (variant ``idrec~X``;
the configured collaborative model feeds the main run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laser_repro.experiment.specs import Fig5Spec

from .plotting import colors_for, bar_panel, new_figure, note_missing, note_stand_ins, save_figure
from .runs import Gap, LONG_LABELS, RunGroup, label, load_cells
from .significance import SeedSummary

SPLIT = "test"
PLOT_METRICS = ("recall@10", "ndcg@10", "mrr")
KINDS = ("alone", "fed")  # the ID model alone / the method fed by it


@dataclass
class Fig5Data:
    datasets: list[str]
    method: str
    idrecs: list[str]
    seeds: list[int]
    groups: dict[tuple[str, str, str], RunGroup] = field(default_factory=dict)  # (dataset, kind, idrec)

    def summary(self, dataset: str, kind: str, idrec: str, metric: str) -> SeedSummary:
        return self.groups[(dataset, kind, idrec)].summary(SPLIT, metric)

    def missing(self) -> list[Gap]:
        return list(dict.fromkeys(p for g in self.groups.values() for p in g.missing))


def compute_fig5(spec: Fig5Spec) -> Fig5Data:
    data = Fig5Data(list(spec.datasets), spec.method, list(spec.idrecs), list(spec.seeds))
    data.groups = load_cells(spec.runs_root, spec.cells(), spec.seeds, spec.stale)
    return data


def plot_fig5(data: Fig5Data, out: str | Path) -> tuple[Path, Path]:
    fig, axes = new_figure(len(data.datasets), len(PLOT_METRICS))
    groups = [label(x) for x in data.idrecs]
    names = {"alone": "ID recommender alone", "fed": f"{label(data.method)} with it"}
    colors = dict(zip(("alone", "fed"), colors_for(["bert4rec", data.method])))
    for row, d in zip(axes, data.datasets):
        for ax, m in zip(row, PLOT_METRICS):
            series = [(names[k], colors[k], [data.summary(d, k, x, m) for x in data.idrecs]) for k in KINDS]
            bar_panel(ax, groups, series)
            ax.set_title(f"{d.capitalize()}: {LONG_LABELS[m]}")
            ax.set_ylabel(f"test {LONG_LABELS[m]} (×100)")
    notes = [note_missing(data.missing(), len(data.groups) * len(data.seeds)),
             note_stand_ins(data.groups.values())]
    return save_figure(fig, out, legend_ax=axes[0][0], n_seeds=len(data.seeds), footnotes=notes)


def main(spec: Fig5Spec, out: str) -> str:
    """CLI entry (``laser-repro artifact fig5``)."""
    plot_fig5(compute_fig5(spec), out)
    return out
