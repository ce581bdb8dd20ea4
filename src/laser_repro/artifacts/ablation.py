"""Tables 3-5: Laser-C variants against the full model (test metrics, the paper's 0.xxxx format).

Table 3 (Scientific) and Table 4 (Pet) are the module ablations, Table 5 the prompt
templates. Rows read ``{dataset}/{method}/{variant}/seed~{seed}``; the best row per metric is
bold and the second underlined (the paper's convention), and a variant's cell gets "*" when
the full model beats it in a paired t-test on per-user test values with p < alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from laser_repro.io import write_text
from laser_repro.paper.reported import load_reported

from .markdown import bullet_list, fmt_mean_std, fmt_p, md_table, mark
from .runs import LONG_LABELS, METRICS, PAPER_BACKBONES, RunGroup, load_group, paired_values
from .significance import ALPHA, TEST_NAME, PairedTest, SeedSummary, paired_ttest

SPLIT = "test"
ABLATION_LAYOUT: list[tuple[str | None, list[str]]] = [
    (None, ["main"]),
    ("Bi-Tuning", ["no-prefix", "no-suffix-mean", "no-suffix-eos"]),
    ("M-Former", ["no-mformer", "one-expert"]),
    ("Model Learning", ["no-lb", "no-phase1", "no-phase2"]),
]
LAYOUTS: dict[str, list[tuple[str | None, list[str]]]] = {
    "table3": ABLATION_LAYOUT,
    "table4": ABLATION_LAYOUT,
    "table5": [(None, ["main", "tpl-no-phrase", "tpl-no-instruction", "tpl-two-instructions"])],
}
TITLES = {
    "table3": "Table 3: ablation study (Laser-C variants)",
    "table4": "Table 4: ablation study (Laser-C variants)",
    "table5": "Table 5: hard prompt templates (Laser-C)",
}


@dataclass
class AblationResult:
    table: str
    dataset: str
    method: str
    seeds: list[int]
    variants: list[str]
    labels: dict[str, str]
    groups: dict[str, RunGroup] = field(default_factory=dict)
    summaries: dict[tuple[str, str], SeedSummary] = field(default_factory=dict)  # (variant, metric)
    tests: dict[tuple[str, str], PairedTest] = field(default_factory=dict)  # full vs variant
    ranking: dict[str, list[str]] = field(default_factory=dict)  # metric -> variants by mean, best first

    def missing(self) -> list[Path]:
        return [p for g in self.groups.values() for p in g.missing]

    def change(self, variant: str, metric: str) -> float:
        """Relative change of ``variant`` vs the full model, in % (negative = worse)."""
        full, v = self.summaries[("main", metric)].mean, self.summaries[(variant, metric)].mean
        return (v - full) / full * 100 if full and not math.isnan(full) else math.nan


def compute_ablation(table: str, runs_root: str | Path, dataset: str, seeds: Sequence[int],
                     method: str = "laser-c") -> AblationResult:
    if table not in LAYOUTS:
        raise ValueError(f"unknown ablation table {table!r}; expected one of {sorted(LAYOUTS)}")
    reported = load_reported()
    variants = [v for _, vs in LAYOUTS[table] for v in vs]
    labels = {v: reported.ablation_rows(table)[v]["label"] for v in variants}
    res = AblationResult(table, dataset, method, list(seeds), variants, labels)
    for v in variants:
        g = load_group(runs_root, dataset, method, v, seeds)
        res.groups[v] = g
        for m in METRICS:
            res.summaries[(v, m)] = g.summary(SPLIT, m)
    full = res.groups["main"]
    for m in METRICS:
        found = [v for v in variants if res.summaries[(v, m)].n]
        res.ranking[m] = sorted(found, key=lambda v: -res.summaries[(v, m)].mean)
        for v in variants[1:]:
            g = res.groups[v]
            if full.has_ranks and g.has_ranks:
                res.tests[(v, m)] = paired_ttest(*paired_values(full, g, SPLIT, m))
    return res


def render_ablation(res: AblationResult) -> str:
    header = ["Variant"] + [LONG_LABELS[m] for m in METRICS]
    body = []
    stand_ins = {}
    for section, variants in LAYOUTS[res.table]:
        if section:
            body.append([f"*{section}*", "", "", ""])
        for v in variants:
            g = res.groups[v]
            si = g.stand_in()
            if si:
                stand_ins[v] = si
            cells = []
            for m in METRICS:
                rank = res.ranking[m]
                test = res.tests.get((v, m))
                text = fmt_mean_std(res.summaries[(v, m)], 1.0, 4, len(res.seeds))
                cells.append(mark(text, bold=bool(rank) and rank[0] == v, underline=len(rank) > 1 and rank[1] == v,
                                  star=test is not None and test.better(ALPHA), dagger=bool(si)))
            label = res.labels[v] if v != "main" else f"{res.labels[v]} (full)"
            body.append([label, *cells])
    change_rows, test_rows = [], []
    for v in res.variants[1:]:
        change_rows.append([res.labels[v]] + [
            "—" if math.isnan(res.change(v, m)) else f"{res.change(v, m):+.2f}" for m in METRICS])
        for m in METRICS:
            t = res.tests.get((v, m))
            if t is not None:
                test_rows.append([res.labels[v], LONG_LABELS[m], str(t.n), f"{t.t:.3f}", fmt_p(t.p),
                                  "yes" if t.better(ALPHA) else "no"])
    ns = sorted({t.n for t in res.tests.values()})
    text = f"# {TITLES[res.table]} on {res.dataset}\n\n"
    text += md_table(header, body) + "\n\n"
    foot = [
        f"Method `{res.method}`, variants read from `{res.dataset}/{res.method}/{{variant}}/seed~{{seed}}`; "
        f"test metrics as fractions (the paper's format), mean ± sample std over seeds {', '.join(map(str, res.seeds))}.",
        "**Bold**: best row per metric; <u>underline</u>: second best (the paper's convention).",
        f"\\* = the full model is better than this variant: {TEST_NAME}, alpha = {ALPHA}, "
        f"no multiple-comparison correction; n = {', '.join(map(str, ns)) or '—'} paired test users.",
    ]
    if stand_ins:
        paper = PAPER_BACKBONES.get(res.method, "the paper's backbone")
        by_backbone: dict[str, list[str]] = {}
        for v, b in stand_ins.items():
            by_backbone.setdefault(b, []).append(res.labels[v])
        foot.append("† stand-in backbone (not comparable to the paper's numbers): "
                    + "; ".join(f"{b} instead of {paper} ({', '.join(rows)})" for b, rows in by_backbone.items()))
    text += bullet_list(foot) + "\n\n"
    text += "## Relative change vs the full model (%)\n\n"
    text += md_table(["Variant"] + [LONG_LABELS[m] for m in METRICS], change_rows) + "\n\n"
    text += "## Paired t-tests (full model vs variant)\n\n"
    text += (md_table(["Variant", "Metric", "n", "t", "p", "full better, p < alpha"], test_rows,
                      ["l", "l", "r", "r", "r", "r"]) if test_rows else "No test: per-user ranks missing.") + "\n"
    missing = res.missing()
    text += f"\n## Missing runs ({len(missing)})\n\n" + bullet_list([f"`{p}`" for p in missing]) + "\n"
    return text


def make_ablation(table, runs_root, dataset, seeds, out, method="laser-c") -> AblationResult:
    res = compute_ablation(table, runs_root, dataset, seeds, method)
    write_text(out, render_ablation(res))
    return res


def main(args) -> str:
    """CLI entry (``laser-repro artifact table3|table4|table5``)."""
    make_ablation(args.artifact, args.runs_root, args.dataset, args.seeds, args.out, args.method)
    return args.out
