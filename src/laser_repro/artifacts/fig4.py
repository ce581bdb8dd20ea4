"""Figure 4: parameter analysis on VALIDATION metrics (paper: Laser-C on Scientific; K, L, lambda, S).

One panel per grid axis of the spec; each point reads its run (variant ``{axis}~{value}``), except
the value equal to the main run's, which reads the main run. The spec's cells carry the names
(:func:`laser_repro.experiment.layout.grid_variant`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laser_repro.experiment import layout
from laser_repro.experiment.specs import Fig4Spec, GridAxis

from .plotting import COLORS, line_panel, new_figure, note_missing, note_stand_ins, save_figure
from .runs import Gap, LONG_LABELS, RunGroup, label, load_cells
from .significance import SeedSummary

SPLIT = "valid"
PLOT_METRICS = ("recall@10", "ndcg@10")
AXIS_LABELS = {"K": "number of query experts K", "L": "query tokens per expert L",
               "lambda": "load-balancing weight λ", "S": "number of suffix tokens"}


@dataclass
class Fig4Data:
    dataset: str
    method: str
    axes: list[GridAxis]
    seeds: list[int]
    groups: dict[tuple[str, float], RunGroup] = field(default_factory=dict)  # (axis, value)

    def axis(self, name: str) -> GridAxis:
        return next(a for a in self.axes if a.name == name)

    def summary(self, axis: str, value, metric: str) -> SeedSummary:
        return self.groups[(axis, value)].summary(SPLIT, metric)

    def best_value(self, axis: str, metric: str = "ndcg@10"):
        found = [(self.summary(axis, v, metric).mean, v) for v in self.axis(axis).values if self.groups[(axis, v)].found]
        return max(found)[1] if found else None

    def missing(self) -> list[Gap]:
        return list(dict.fromkeys(p for g in self.groups.values() for p in g.missing))


def compute_fig4(spec: Fig4Spec) -> Fig4Data:
    data = Fig4Data(spec.dataset, spec.method, list(spec.axes), list(spec.seeds))
    data.groups = load_cells(spec.runs_root, spec.cells(), spec.seeds, spec.stale)
    return data


def plot_fig4(data: Fig4Data, out: str | Path) -> tuple[Path, Path]:
    if not data.axes:
        raise ValueError("fig4: the spec has no grid axis (fig4.grid in the workflow config)")
    fig, axes = new_figure(1, len(data.axes))
    for ax, a in zip(axes[0], data.axes):
        series = [(f"valid {LONG_LABELS[m]}", COLORS[m], [data.summary(a.name, v, m) for v in a.values])
                  for m in PLOT_METRICS]
        xl = [layout.fmt_value(v) + ("\n(main)" if layout.same_value(v, a.main) else "") for v in a.values]
        line_panel(ax, xl, series)
        ax.set_xlabel(AXIS_LABELS.get(a.name, a.name))
        ax.set_ylabel("validation metric (×100)")
        ax.set_title(f"{label(data.method)}, {data.dataset}: {a.name}")
    notes = [note_missing(data.missing(), len({g.label for g in data.groups.values()}) * len(data.seeds)),
             note_stand_ins(data.groups.values())]
    return save_figure(fig, out, legend_ax=axes[0][0], n_seeds=len(data.seeds), footnotes=notes)


def main(spec: Fig4Spec, out: str) -> str:
    """CLI entry (``laser-repro artifact fig4``)."""
    plot_fig4(compute_fig4(spec), out)
    return out
