"""Figure 2: cold-start performance of the spec's methods (paper: Laser-C vs BERT4Rec on Pet and Games).

A test user counts as cold when their test target is a cold item: the bottom 35% of items by
training interaction count (:func:`laser_repro.data.splits.cold_items`). Each seed's metric is
recomputed on that subset of its per-user ranks (``EvalResult.subset``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from laser_repro.data.dataset import load_dataset
from laser_repro.data.splits import cold_items
from laser_repro.experiment.specs import Fig2Spec

from .plotting import bar_panel, colors_for, new_figure, note_missing, note_stand_ins, save_figure
from .runs import Gap, METRIC_LABELS, METRICS, RunGroup, label, load_cells
from .significance import SeedSummary

SPLIT = "test"
log = logging.getLogger("laser_repro.artifacts")


@dataclass
class Fig2Data:
    datasets: list[str]
    methods: list[str]
    seeds: list[int]
    summaries: dict[tuple[str, str, str], SeedSummary] = field(default_factory=dict)  # (dataset, method, metric)
    n_cold_users: dict[tuple[str, str], int] = field(default_factory=dict)  # (data set, method): fewest per seed
    groups: dict[tuple[str, str], RunGroup] = field(default_factory=dict)
    unusable: list[Gap] = field(default_factory=list)  # finished runs the figure cannot use, with why

    def cold_users_text(self, d: str) -> str | None:
        """Cold test users of data set ``d`` ("n", or "n1/n2" when methods tested different user sets)."""
        counts = sorted({n for (dd, _), n in self.n_cold_users.items() if dd == d})
        return "/".join(map(str, counts)) if counts else None

    def missing(self) -> list[Gap]:
        """Requested runs absent or stale, then finished ones without what cold-start metrics need."""
        return [p for g in self.groups.values() for p in g.missing] + self.unusable


def compute_fig2(spec: Fig2Spec) -> Fig2Data:
    data = Fig2Data(list(spec.datasets), list(spec.methods), list(spec.seeds))
    data.groups = load_cells(spec.runs_root, spec.cells(), spec.seeds, spec.stale)
    for d in spec.datasets:
        ds_path = Path(spec.data_root) / d
        prepared = (ds_path / "stats.json").exists()
        cold = cold_items(load_dataset(ds_path), spec.cold_fraction) if prepared else None
        for method in spec.methods:
            g = data.groups[(d, method)]
            usable = cold is not None and g.has_ranks
            for r in g.runs if not usable else ():
                if not prepared:
                    why = (f"its data set is not prepared ({ds_path / 'stats.json'} missing), so its cold items "
                           "are unknown")
                elif r.ranks is None or "test" not in r.ranks:
                    why = "ranks.npz missing or without test ranks: cold-start metrics need per-user ranks"
                else:
                    why = "another seed of its cell has no per-user ranks, and the figure averages complete cells only"
                data.unusable.append(Gap(r.path / "metrics.json", why, kind="unusable"))
                log.warning("Figure 2 cannot use %s: %s", r.path, why)
            if usable:  # a seed whose (capped) test users have no cold target has no value: left out, by name
                kept, empty = [], []
                for r in g.runs:
                    (kept if cold[r.split_ranks(SPLIT).targets].any() else empty).append(r)
                data.unusable += [Gap(r.path / "metrics.json", "none of its test users' targets is a cold item (a "
                                      "seeded subset of the test users?)", kind="unusable") for r in empty]
                g = replace(g, runs=kept)
                data.groups[(d, method)], usable = g, bool(g.runs)  # the seeds the bar averages (claims count them)
            for m in METRICS:
                data.summaries[(d, method, m)] = (g.summary(SPLIT, m, lambda res: cold[res.targets])
                                                  if usable else SeedSummary(0, np.nan, np.nan, np.nan, np.nan))
            if usable:  # the fewest cold test users a seed tested (capped seeds each test their own users)
                data.n_cold_users[(d, method)] = min(int(cold[r.split_ranks(SPLIT).targets].sum()) for r in g.runs)
    return data


def plot_fig2(data: Fig2Data, out: str | Path) -> tuple[Path, Path]:
    fig, axes = new_figure(1, len(data.datasets))
    for ax, d in zip(axes[0], data.datasets):
        series = [(label(m), c, [data.summaries[(d, m, k)] for k in METRICS])
                  for m, c in zip(data.methods, colors_for(data.methods))]
        bar_panel(ax, [METRIC_LABELS[k] for k in METRICS], series)
        n = data.cold_users_text(d)
        ax.set_title(f"{d.capitalize()} (cold items" + (f", {n} test users)" if n is not None else ")"))
        ax.set_ylabel("test metric on cold items (×100)")
    notes = [note_missing(data.missing(), len(data.datasets) * len(data.methods) * len(data.seeds)),
             note_stand_ins(data.groups.values())]
    return save_figure(fig, out, legend_ax=axes[0][0], n_seeds=len(data.seeds), footnotes=notes)


def main(spec: Fig2Spec, out: str) -> str:
    """CLI entry (``laser-repro artifact fig2``)."""
    plot_fig2(compute_fig2(spec), out)
    return out
