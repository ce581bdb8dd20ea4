"""Tables 3-5: a method's variants against the full model (test metrics, the paper's 0.xxxx format).

Table 3 (Scientific) and Table 4 (Pet) are the module ablations of Laser-C, Table 5 the prompt
templates. The spec (its config section) names the data set, the method and the variants; rows
are the full model (``main``) then each variant, grouped under the paper's section headings, each heading once
in the order its first variant is listed (variants the paper does not have under "Other"); the best row per metric is
bold and the second underlined (the paper's convention), and a variant's cell gets "*" when
the full model beats it in a paired t-test on per-user test values with p < alpha and in the seeds' means
(not in the paper's tables: ours); "§" when a seed tested a subset of the test users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from laser_repro.experiment import registry
from laser_repro.experiment.specs import VariantTableSpec
from laser_repro.paper.reported import load_reported

from .output import write_markdown
from .markdown import bullet_list, fmt_mean_std, fmt_p, md_table, mark
from .runs import (Gap, LONG_LABELS, METRICS, RunGroup, full_test_users, label, load_cells, paired_values, subset_footnote,
                   ties_note)
from .significance import ALPHA, TEST_NAME, PairedTest, SeedSummary, paired_ttest

SPLIT = "test"
# The paper's section headings of Tables 3-4 (Table 5 has none).
SECTIONS: dict[str, str] = {
    "no-prefix": "Bi-Tuning", "no-suffix-mean": "Bi-Tuning", "no-suffix-eos": "Bi-Tuning",
    "no-mformer": "M-Former", "one-expert": "M-Former",
    "no-lb": "Model Learning", "no-phase1": "Model Learning", "no-phase2": "Model Learning",
}
TITLES = {
    "table3": "Table 3: ablation study",
    "table4": "Table 4: ablation study",
    "table5": "Table 5: hard prompt templates",
}


def layout_of(table: str, variants: list[str]) -> list[tuple[str | None, list[str]]]:
    """[(section heading or None, rows)]: the full model first, then each section once (in the order its first
    variant comes), its variants in their order."""
    sections: dict[str | None, list[str]] = {}
    for v in variants:
        section = None if table == "table5" else (SECTIONS.get(v) or "Other")
        sections.setdefault(section, []).append(v)
    return [(None, ["main"]), *sections.items()]


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
    full_n: int = 0  # the data set's test users (a cell of a run that tested fewer is marked §)

    def missing(self) -> list[Gap]:
        return [p for g in self.groups.values() for p in g.missing]

    def change(self, variant: str, metric: str) -> float:
        """Relative change of ``variant`` vs the full model, in % (negative = worse)."""
        full, v = self.summaries[("main", metric)].mean, self.summaries[(variant, metric)].mean
        return (v - full) / full * 100 if full and not math.isnan(full) else math.nan

    def starred(self, variant: str, metric: str) -> bool:
        """The full model beats ``variant``: in the paired test and in the seeds' means (per-seed user caps can pair
        other users than the means average)."""
        test = self.tests.get((variant, metric))
        return test is not None and test.better(ALPHA) and self.change(variant, metric) < 0


def compute_ablation(spec: VariantTableSpec) -> AblationResult:
    if spec.table not in TITLES:
        raise ValueError(f"unknown variant table {spec.table!r}; expected one of {sorted(TITLES)}")
    paper_rows = load_reported().ablation_rows(spec.table)
    variants = [v for _, vs in layout_of(spec.table, spec.variants) for v in vs]
    labels = {v: paper_rows[v]["label"] if v in paper_rows else v for v in variants}
    labels["main"] = label(spec.method)
    res = AblationResult(spec.table, spec.dataset, spec.method, list(spec.seeds), variants, labels)
    res.groups = load_cells(spec.runs_root, spec.cells(), spec.seeds, spec.stale)
    res.full_n = full_test_users(list(res.groups.values()), SPLIT)
    for v in variants:
        for m in METRICS:
            res.summaries[(v, m)] = res.groups[v].summary(SPLIT, m)
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
    stand_ins, subsets = {}, {}
    for section, variants in layout_of(res.table, res.variants[1:]):
        if section:
            body.append([f"*{section}*", "", "", ""])
        for v in variants:
            g = res.groups[v]
            si = g.stand_in()
            if si:
                stand_ins[v] = si
            fewer = g.fewer_users(SPLIT, res.full_n)
            if fewer:
                subsets[res.labels[v]] = f"n = {', '.join(map(str, fewer))} of {res.full_n}"
            cells = []
            for m in METRICS:
                rank = res.ranking[m]
                text = fmt_mean_std(res.summaries[(v, m)], 1.0, 4, len(res.seeds))
                cells.append(mark(text, bold=bool(rank) and rank[0] == v, underline=len(rank) > 1 and rank[1] == v,
                                  star=res.starred(v, m), dagger=bool(si)) + ("§" if fewer and text != "—" else ""))
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
                                  "yes" if res.starred(v, m) else "no"])
    ns = sorted({t.n for t in res.tests.values()})
    text = f"# {TITLES[res.table]} ({res.labels['main']} variants) on {res.dataset}\n\n"
    text += md_table(header, body) + "\n\n"
    foot = [
        f"Method `{res.method}`, variants read from `{res.dataset}/{res.method}/{{variant}}/seed~{{seed}}`; "
        f"test metrics as fractions (the paper's format), mean ± sample std over seeds {', '.join(map(str, res.seeds))}.",
        "**Bold**: best row per metric; <u>underline</u>: second best (the paper's convention).",
        f"\\* = the full model is better than this variant (not a mark of the paper's tables): {TEST_NAME}, "
        f"alpha = {ALPHA}, and in the seeds' means; no multiple-comparison correction; "
        f"n = {', '.join(map(str, ns)) or '—'} paired test users.",
    ]
    untested = [res.labels[v] for v in res.variants[1:] if res.groups[v].found
                and not (res.groups[v].has_ranks and res.groups["main"].has_ranks)]
    if untested:  # a missing * must not read as "not significant"
        foot.append(f"No test (per-user ranks missing for it or the full model): {', '.join(untested)}.")
    if stand_ins:
        paper = getattr(registry.METHODS.get(res.method), "paper_backbone", None) or "the paper's backbone"
        by_backbone: dict[str, list[str]] = {}
        for v, b in stand_ins.items():
            by_backbone.setdefault(b, []).append(res.labels[v])
        foot.append("† stand-in backbone (not comparable to the paper's numbers): "
                    + "; ".join(f"{b} instead of {paper} ({', '.join(rows)})" for b, rows in by_backbone.items()))
    if subsets:
        foot.append(subset_footnote(subsets))
    if (ties := ties_note(res.groups.values())):
        foot.append(ties)
    text += bullet_list(foot) + "\n\n"
    text += "## Relative change vs the full model (%)\n\n"
    text += md_table(["Variant"] + [LONG_LABELS[m] for m in METRICS], change_rows) + "\n\n"
    text += "## Paired t-tests (full model vs variant)\n\n"
    text += (md_table(["Variant", "Metric", "n", "t", "p", "full better (p < alpha, means agree)"], test_rows,
                      ["l", "l", "r", "r", "r", "r"]) if test_rows else "No test: per-user ranks missing.") + "\n"
    missing = res.missing()
    text += f"\n## Missing runs ({len(missing)})\n\n" + bullet_list([p.markdown for p in missing]) + "\n"
    return text


def make_ablation(spec: VariantTableSpec, out) -> AblationResult:
    res = compute_ablation(spec)
    write_markdown(out, render_ablation(res))
    return res


def main(spec: VariantTableSpec, out: str) -> str:
    """CLI entry (``laser-repro artifact table3|table4|table5``)."""
    make_ablation(spec, out)
    return out
