"""Table 2: overall performance in the paper's layout (test metrics x100).

Per column (data set x metric): the best Laser variant is bold, the best baseline run in this
suite underlined, and the best Laser cell gets "*" when it beats that baseline in a paired
t-test on per-user test values (seed-averaged) with p < alpha. Improv.% = (best Laser - best
baseline) / best baseline x 100 (paper's Improv. row). Rows the suite does not implement
show "—"; missing runs show "—" and are listed by path. Rows, labels and groups come from the
method registry and the spec (``table2.methods``), the paper's values from ``reported.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from laser_repro.experiment import registry
from laser_repro.experiment.specs import Table2Spec
from laser_repro.paper.reported import Reported, load_reported

from .output import write_markdown
from .markdown import bullet_list, fmt_mean_std, fmt_p, md_table, mark
from .runs import (Gap, METRIC_LABELS, METRICS, RunGroup, full_test_users, is_ours, load_cells, paired_values,
                   subset_footnote, ties_note)
from .significance import ALPHA, TEST_NAME, PairedTest, SeedSummary, paired_ttest

SCALE = 100.0
SPLIT = "test"
GROUP_TITLES = registry.GROUPS
RUN, NOT_IMPLEMENTED, NOT_REQUESTED = "run", "not implemented", "not requested"


@dataclass
class ColumnResult:
    """Markers and the significance test of one (data set, metric) column."""

    best_laser: str | None = None
    best_baseline: str | None = None
    test: PairedTest | None = None
    improv: float = math.nan

    @property
    def star(self) -> bool:
        """The paired test says the best Laser row is better, and its seed means agree (with seed-specific test
        users the two can differ in sign)."""
        return self.test is not None and self.test.better(ALPHA) and self.improv > 0


@dataclass
class Table2Result:
    datasets: list[str]
    seeds: list[int]
    rows: list[tuple[str, str, str, str]]  # (method, label, group, status: run / not implemented / not requested)
    groups: dict[tuple[str, str], RunGroup] = field(default_factory=dict)  # (method, dataset)
    summaries: dict[tuple[str, str, str], SeedSummary] = field(default_factory=dict)  # (method, dataset, metric)
    columns: dict[tuple[str, str], ColumnResult] = field(default_factory=dict)  # (dataset, metric)
    notes: list[str] = field(default_factory=list)
    # per data set, its test users (its stats.json, where it is here), else the most any row evaluated: a row with
    # fewer ran on a seeded subset (§), even when every row did
    full_n: dict[str, int] = field(default_factory=dict)

    def run_rows(self, ours: bool) -> list[str]:
        return [m for m, _, _, status in self.rows if status == RUN and is_ours(m) == ours]

    def baselines(self) -> list[str]:
        return self.run_rows(ours=False)

    def missing(self) -> list[Gap]:
        """Requested runs without metrics.json."""
        return [p for g in self.groups.values() for p in g.missing]


def table2_rows(reported: Reported, methods: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """The paper's rows in its order, then requested methods the paper does not print (after their group)."""
    rows = []
    for name, spec in reported.table2_rows.items():
        m = registry.METHODS.get(name)
        status = NOT_IMPLEMENTED if m is None else (RUN if name in methods else NOT_REQUESTED)
        rows.append((name, m.label if m else spec["label"], spec["group"], status))
    for name in methods:
        if name in reported.table2_rows:
            continue
        m = registry.get_method(name, "table2.methods")
        if m.group is None:
            raise ValueError(f"table2.methods: {name!r} has no Table 2 group in the registry")
        last = max((i for i, r in enumerate(rows) if r[2] == m.group), default=len(rows) - 1)
        rows.insert(last + 1, (name, f"{m.label} (not in the paper)", m.group, RUN))
    return rows


def best_of(summaries: dict[str, SeedSummary]) -> str | None:
    """The key with the highest mean (None if no finite mean)."""
    finite = {k: s.mean for k, s in summaries.items() if s.n and not math.isnan(s.mean)}
    return max(finite, key=finite.get) if finite else None


def compute_table2(spec: Table2Spec, reported: Reported | None = None) -> Table2Result:
    reported = reported or load_reported()
    res = Table2Result(list(spec.datasets), list(spec.seeds), table2_rows(reported, spec.methods))
    res.groups = load_cells(spec.runs_root, spec.cells(), spec.seeds, spec.stale)
    for d in spec.datasets:
        res.full_n[d] = full_test_users([g for (_, dd), g in res.groups.items() if dd == d], SPLIT)
    for (method, d), g in res.groups.items():
        for m in METRICS:
            res.summaries[(method, d, m)] = g.summary(SPLIT, m)
    lasers = res.run_rows(ours=True)
    for d in spec.datasets:
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
    scratch: dict[str, str] = {}
    not_run: dict[str, list[str]] = {NOT_IMPLEMENTED: [], NOT_REQUESTED: []}
    full_n = res.full_n
    subsets: dict[str, str] = {}
    for method, label, group, status in res.rows:
        if group != current_group:
            body.append([f"*{GROUP_TITLES.get(group, group)}*", *blank])
            current_group = group
        if status != RUN:
            not_run[status].append(label)
            body.append([label, *["—"] * len(blank)])
            continue
        cells = []
        for d in res.datasets:
            g = res.groups[(method, d)]
            si = g.stand_in()
            if si:
                stand_ins[f"{label} on {d}"] = f"{si} instead of {registry.METHODS[method].paper_backbone}"
            fresh = g.not_pretrained()
            if fresh:
                scratch[label] = registry.METHODS[method].pretrained_on or ""
            fewer = g.fewer_users(SPLIT, full_n[d])
            if fewer:
                subsets[f"{label} on {d}"] = f"n = {', '.join(map(str, fewer))} of {full_n[d]}"
            for metric in METRICS:
                col = res.columns[(d, metric)]
                text = fmt_mean_std(res.summaries[(method, d, metric)], SCALE, 2, len(res.seeds))
                cells.append(mark(text, bold=col.best_laser == method, underline=col.best_baseline == method,
                                  star=col.best_laser == method and col.star, dagger=bool(si), ddagger=fresh)
                             + ("§" if fewer else ""))
        body.append([label, *cells])
    improv = []
    for d in res.datasets:
        for metric in METRICS:
            col = res.columns[(d, metric)]
            v = col.improv
            # the marks of the two cells it is computed from: a stand-in's or a subset's Improv. is theirs too
            marks = "".join(dict.fromkeys("".join(res.groups[(m, d)].marks(SPLIT, full_n[d])
                                                  for m in (col.best_laser, col.best_baseline) if m)))
            improv.append("—" if math.isnan(v) else f"{v:.2f}{marks}")
    body.append(["**Improv. (%)**", *improv])

    n_by_dataset = {}
    sig_rows = []
    for d in res.datasets:
        for metric in METRICS:
            col = res.columns[(d, metric)]
            if col.test is None:
                continue
            n_by_dataset.setdefault(d, {}).setdefault(col.test.n, []).append(METRIC_LABELS[metric])  # by metric
            sig_rows.append([d, METRIC_LABELS[metric], col.best_laser, col.best_baseline, str(col.test.n),
                             f"{col.test.t:.3f}", fmt_p(col.test.p), "yes" if col.star else "no"])
    n_text = ", ".join(f"{d}: n = " + (str(next(iter(ns))) if len(ns) == 1 else  # the best rows may differ by metric
                                        ", ".join(f"{n} ({', '.join(ms)})" for n, ms in ns.items()))
                       for d, ns in n_by_dataset.items()) or "no test could be run"
    text = "# Table 2: performance comparison (test, values x100)\n\n"
    text += md_table(header, body) + "\n\n"
    foot = [
        f"Mean ± sample std over seeds {', '.join(map(str, res.seeds))} of each run's test metric "
        "(from metrics.json), x100; '(n=k)' marks cells with fewer seeds than requested.",
        "**Bold**: best Laser row; <u>underline</u>: best baseline among the rows run in this suite "
        "(rows not implemented are not candidates); Improv. (%) = (best Laser − best baseline) / best baseline × 100, "
        "with the marks (†, ‡, §) of the two cells it compares.",
        f"\\* = the best Laser row beats the best baseline: {TEST_NAME}, alpha = {ALPHA}, "
        f"no multiple-comparison correction; n = paired test users ({n_text}).",
    ]
    if stand_ins:
        foot.append("† stand-in backbone (not the paper's; not comparable to the paper's numbers): "
                    + "; ".join(f"{k}: {v}" for k, v in stand_ins.items()))
    if (ties := ties_note(res.groups.values())):
        foot.append(ties)
    if scratch:
        foot.append("‡ not pre-trained (trained on the target data set only; the paper's run was pre-trained): "
                    + "; ".join(f"{k}: on {v}" for k, v in scratch.items()))
    if subsets:
        foot.append(subset_footnote(subsets))
    extras = [label for m, label, _, status in res.rows if status == RUN and not registry.METHODS[m].in_paper]
    if extras:
        foot.append(f"{', '.join(extras)}: run by this suite (not a row of the paper's Table 2); "
                    "it competes for best baseline.")
    if not_run[NOT_IMPLEMENTED]:
        foot.append("Not implemented in this suite (shown as —; their paper values are in compare.md as 'not run'): "
                    + ", ".join(not_run[NOT_IMPLEMENTED]) + ".")
    if not_run[NOT_REQUESTED]:
        foot.append("Not requested by `table2.methods` (shown as —): " + ", ".join(not_run[NOT_REQUESTED]) + ".")
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
    text += bullet_list([p.markdown for p in missing]) + "\n"
    return text


def make_table2(spec: Table2Spec, out) -> Table2Result:
    res = compute_table2(spec)
    write_markdown(out, render_table2(res))
    return res


def main(spec: Table2Spec, out: str) -> str:
    """CLI entry (``laser-repro artifact table2``)."""
    make_table2(spec, out)
    return out
