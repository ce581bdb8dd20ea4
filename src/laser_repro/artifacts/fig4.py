"""Figure 4: parameter analysis of Laser-C on VALIDATION metrics (K, L, lambda, S).

Each ``--grid KEY=V1,V2,...`` is a panel; point V reads variant ``KEY~V``, except the value
equal to ``--main KEY=V``, which reads the main run (variant ``main``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .plotting import COLORS, line_panel, new_figure, note_missing, save_figure
from .runs import LONG_LABELS, RunGroup, load_group
from .significance import SeedSummary

SPLIT = "valid"
PLOT_METRICS = ("recall@10", "ndcg@10")
AXIS_LABELS = {"K": "number of query experts K", "L": "query tokens per expert L",
               "lambda": "load-balancing weight λ", "S": "number of suffix tokens"}


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """['K=2,4,8'] -> {'K': ['2', '4', '8']}; errors name the bad spec."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ValueError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. K=2,4,8,16)")
        out[key.strip()] = vals
    return out


def parse_main(specs: Sequence[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--main {spec!r}: expected KEY=V (e.g. K=8)")
        out[key.strip()] = value.strip()
    return out


def same_value(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def grid_variant(key: str, value: str, main: dict[str, str]) -> str:
    return "main" if key in main and same_value(value, main[key]) else f"{key}~{value}"


@dataclass
class Fig4Data:
    dataset: str
    grid: dict[str, list[str]]
    main: dict[str, str]
    seeds: list[int]
    method: str = "laser-c"
    groups: dict[tuple[str, str], RunGroup] = field(default_factory=dict)  # (key, value)

    def summary(self, key: str, value: str, metric: str) -> SeedSummary:
        return self.groups[(key, value)].summary(SPLIT, metric)

    def best_value(self, key: str, metric: str = "ndcg@10") -> str | None:
        found = [(self.summary(key, v, metric).mean, v) for v in self.grid[key] if self.groups[(key, v)].found]
        return max(found)[1] if found else None

    def missing(self) -> list[Path]:
        seen, out = set(), []
        for g in self.groups.values():
            for p in g.missing:
                if p not in seen:
                    seen.add(p)
                    out.append(p)
        return out


def compute_fig4(runs_root, dataset: str, grid: dict[str, list[str]], main: dict[str, str],
                 seeds: Sequence[int], method: str = "laser-c") -> Fig4Data:
    data = Fig4Data(dataset, grid, main, list(seeds), method)
    for key, values in grid.items():
        for v in values:
            data.groups[(key, v)] = load_group(runs_root, dataset, method, grid_variant(key, v, main), seeds)
    return data


def plot_fig4(data: Fig4Data, out: str | Path) -> tuple[Path, Path]:
    keys = list(data.grid)
    if not keys:
        raise ValueError("fig4: no --grid given (expected e.g. --grid K=2,4,8,16)")
    fig, axes = new_figure(1, len(keys))
    for ax, key in zip(axes[0], keys):
        vals = data.grid[key]
        series = [(f"valid {LONG_LABELS[m]}", COLORS[m], [data.summary(key, v, m) for v in vals]) for m in PLOT_METRICS]
        xl = [f"{v}\n(main)" if grid_variant(key, v, data.main) == "main" else v for v in vals]
        line_panel(ax, xl, series)
        ax.set_xlabel(AXIS_LABELS.get(key, key))
        ax.set_ylabel("validation metric (×100)")
        ax.set_title(f"{data.dataset.capitalize()}: {key}")
    total = sum(len(v) for v in data.grid.values()) * len(data.seeds)
    note_missing(fig, data.missing(), total)
    return save_figure(fig, out, legend_ax=axes[0][0], n_seeds=len(data.seeds))


def main(args) -> str:
    """CLI entry (``laser-repro artifact fig4``)."""
    data = compute_fig4(args.runs_root, args.dataset, parse_grid(args.grid), parse_main(args.main), args.seeds)
    plot_fig4(data, args.out)
    return args.out
