"""Table 2: overall performance in the paper's layout (test metrics x100).

Per column (data set x metric): the best Laser variant is bold, the best baseline run in this
suite underlined, and the best Laser cell gets "*" when it beats that baseline in a paired
t-test on per-user test values (seed-averaged) with p < alpha. Improv.% = (best Laser - best
baseline) / best baseline x 100 (paper's Improv. row). Rows the suite does not implement
show "—"; missing runs show "—" and are listed by path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from laser_repro.io import write_text
from laser_repro.paper.reported import Reported, load_reported

from .markdown import bullet_list, fmt_mean_std, fmt_p, md_table, mark
from .runs import LASER_METHODS, METRIC_LABELS, METRICS, PAPER_BACKBONES, RunGroup, load_group, paired_values
from .significance import ALPHA, TEST_NAME, PairedTest, SeedSummary, paired_ttest

SCALE = 100.0
SPLIT = "test"
VARIANT = "main"
# Baselines the suite implements that the paper's Table 2 does not print: shown only if run.
EXTRA_BASELINES = {"gru4rec": "GRU4Rec"}
GROUP_TITLES = {
    "traditional": "Traditional Methods",
    "gpt2": "Methods based on GPT2",
    "chatglm2": "Methods based on ChatGLM2",
    "llama2": "Methods based on Llama2",
}


@dataclass
class ColumnResult:
    """Markers and the significance test of one (data set, metric) column."""

    best_laser: str | None = None
    best_baseline: str | None = None
    test: PairedTest | None = None
    improv: float = math.nan

    @property
    def star(self) -> bool:
        return self.test is not None and self.test.better(ALPHA)


@dataclass
class Table2Result:
    datasets: list[str]
    seeds: list[int]
    rows: list[tuple[str, str, str, bool]]  # (method, label, group, implemented)
    groups: dict[tuple[str, str], RunGroup] = field(default_factory=dict)  # (method, dataset)
    summaries: dict[tuple[str, str, str], SeedSummary] = field(default_factory=dict)  # (method, dataset, metric)
    columns: dict[tuple[str, str], ColumnResult] = field(default_factory=dict)  # (dataset, metric)
    notes: list[str] = field(default_factory=list)

    def baselines(self) -> list[str]:
        return [m for m, _, g, impl in self.rows if impl and m not in LASER_METHODS]

    def missing(self) -> list[Path]:
        """Requested runs without metrics.json (extra rows are shown only where run: never missing)."""
        return [p for (m, _), g in self.groups.items() if m not in EXTRA_BASELINES for p in g.missing]


def table2_rows(reported: Reported, runs_root: str | Path, datasets: Sequence[str]) -> list[tuple[str, str, str, bool]]:
    """The paper's rows in order, plus implemented extra baselines that have at least one run."""
    rows = [(k, s["label"], s["group"], bool(s["implemented"])) for k, s in reported.table2_rows.items()]
    for method, label in EXTRA_BASELINES.items():
        if any((Path(runs_root) / d / method / VARIANT).is_dir() for d in datasets):
            last_trad = max(i for i, r in enumerate(rows) if r[2] == "traditional")
            rows.insert(last_trad + 1, (method, f"{label} (not in the paper)", "traditional", True))
    return rows


def best_of(summaries: dict[str, SeedSummary]) -> str | None:
    """The key with the highest mean (None if no finite mean)."""
    finite = {k: s.mean for k, s in summaries.items() if s.n and not math.isnan(s.mean)}
    return max(finite, key=finite.get) if finite else None


def compute_table2(runs_root: str | Path, datasets: Sequence[str], seeds: Sequence[int],
                   reported: Reported | None = None) -> Table2Result:
    reported = reported or load_reported()
    res = Table2Result(list(datasets), list(seeds), table2_rows(reported, runs_root, datasets))
    for method, _, _, implemented in res.rows:
        if not implemented:
            continue
        for d in datasets:
            g = load_group(runs_root, d, method, VARIANT, seeds)
            res.groups[(method, d)] = g
            for m in METRICS:
                res.summaries[(method, d, m)] = g.summary(SPLIT, m)
    lasers = [m for m, _, _, impl in res.rows if impl and m in LASER_METHODS]
    for d in datasets:
        for metric in METRICS:
            col = ColumnResult()
            col.best_laser = best_of({m: res.summaries[(m, d, metric)] for m in lasers})
            col.best_baseline = best_of({m: res.summaries[(m, d, metric)] for m in res.baselines()})
            if col.best_laser and col.best_baseline:
                lo = res.summaries[(col.best_laser, d, metric)].mean
                hi = res.summaries[(col.best_baseline, d, metric)].mean
                col.improv = (lo - hi) / hi * 100 if hi else math.nan
                a, b = res.groups[(col.best_laser, d)], res.groups[(col.best_baseline, d)]
                if a.has_ranks and b.has_ranks:
                    col.test = paired_ttest(*paired_values(a, b, SPLIT, metric))
                else:
                    res.notes.append(f"{d} {METRIC_LABELS[metric]}: no significance test "
                                     f"(ranks.npz missing for {a.label if not a.has_ranks else b.label})")
            res.columns[(d, metric)] = col
    return res


def render_table2(res: Table2Result) -> str:
    header = ["Models"] + [f"{d.capitalize()} {METRIC_LABELS[m]}" for d in res.datasets for m in METRICS]
    body: list[list[str]] = []
    blank = [""] * (len(header) - 1)
    current_group = None
    stand_ins: dict[str, str] = {}
    not_impl = []
    for method, label, group, implemented in res.rows:
        if group != current_group:
            body.append([f"*{GROUP_TITLES.get(group, group)}*", *blank])
            current_group = group
        if not implemented:
            not_impl.append(label)
            body.append([label, *["—"] * len(blank)])
            continue
        cells = []
        for d in res.datasets:
            g = res.groups[(method, d)]
            si = g.stand_in()
            if si:
                stand_ins[f"{label} on {d}"] = si
            for metric in METRICS:
                col = res.columns[(d, metric)]
                text = fmt_mean_std(res.summaries[(method, d, metric)], SCALE, 2, len(res.seeds))
                cells.append(mark(text, bold=col.best_laser == method, underline=col.best_baseline == method,
                                  star=col.best_laser == method and col.star, dagger=bool(si)))
        body.append([label, *cells])
    improv = []
    for d in res.datasets:
        for metric in METRICS:
            v = res.columns[(d, metric)].improv
            improv.append("—" if math.isnan(v) else f"{v:.2f}")
    body.append(["**Improv. (%)**", *improv])

    n_by_dataset = {}
    sig_rows = []
    for d in res.datasets:
        for metric in METRICS:
            col = res.columns[(d, metric)]
            if col.test is None:
                continue
            n_by_dataset.setdefault(d, col.test.n)
            sig_rows.append([d, METRIC_LABELS[metric], col.best_laser, col.best_baseline, str(col.test.n),
                             f"{col.test.t:.3f}", fmt_p(col.test.p), "yes" if col.star else "no"])
    n_text = ", ".join(f"{d}: n = {n}" for d, n in n_by_dataset.items()) or "no test could be run"
    text = "# Table 2: performance comparison (test, values x100)\n\n"
    text += md_table(header, body) + "\n\n"
    foot = [
        f"Mean ± sample std over seeds {', '.join(map(str, res.seeds))} of each run's test metric "
        "(from metrics.json), x100; '(n=k)' marks cells with fewer seeds than requested.",
        "**Bold**: best Laser row; <u>underline</u>: best baseline among the rows run in this suite "
        "(rows not implemented are not candidates); Improv. (%) = (best Laser − best baseline) / best baseline × 100.",
        f"\\* = the best Laser row beats the best baseline: {TEST_NAME}, alpha = {ALPHA}, "
        f"no multiple-comparison correction; n = paired test users ({n_text}).",
    ]
    if stand_ins:
        foot.append("† stand-in backbone (not the paper's; not comparable to the paper's numbers): "
                    + "; ".join(f"{k}: {v} instead of {PAPER_BACKBONES[_method_of(k, res)]}" for k, v in stand_ins.items()))
    extras = [label for m, label, _, _ in res.rows if m in EXTRA_BASELINES]
    if extras:
        foot.append(f"{', '.join(extras)}: run by this suite for Figure 5 and shown because runs exist; "
                    "it competes for best baseline; its empty cells are not counted as missing runs.")
    if not_impl:
        foot.append("Not implemented in this suite (shown as —; their paper values are in compare.md as 'not run'): "
                    + ", ".join(not_impl) + ".")
    text += bullet_list(foot) + "\n"
    text += "\n## Significance tests\n\n"
    if sig_rows:
        text += md_table(["Data set", "Metric", "Best Laser", "Best baseline", "n", "t", "p", "p < alpha and Laser better"],
                         sig_rows, ["l"] * 4 + ["r"] * 4) + "\n"
    else:
        text += "No column had both a Laser run and a baseline run with per-user ranks.\n"
    for note in res.notes:
        text += f"\n- {note}"
    missing = res.missing()
    text += f"\n\n## Missing runs ({len(missing)})\n\n"
    text += bullet_list([f"`{p}`" for p in missing]) + "\n"
    return text


def _method_of(key: str, res: Table2Result) -> str:
    label = key.rsplit(" on ", 1)[0]
    return next(m for m, lab, _, _ in res.rows if lab == label)


def make_table2(runs_root, datasets, seeds, out) -> Table2Result:
    res = compute_table2(runs_root, datasets, seeds)
    write_text(out, render_table2(res))
    return res


def main(args) -> str:
    """CLI entry (``laser-repro artifact table2``)."""
    make_table2(args.runs_root, args.datasets, args.seeds, args.out)
    return args.out
