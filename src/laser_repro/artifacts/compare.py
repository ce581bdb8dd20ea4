"""results/compare.md: every reported cell next to ours, the paper's claims, its consistency.

Per cell: Paper | Ours (mean ± std, n) | Δ | Δ% | 95% CI | verdict. A cell is "within ±T%"
when |Δ%| <= T (``--tolerance``, default 15); cells from stand-in backbones are "stand-in,
not comparable"; rows the suite does not implement are "not run". Data sets other than the
paper's have no paper values; a table's data set that is not the paper's (e.g. a synthetic
set in Pet's role) is compared on claims only.
"""

from __future__ import annotations

import math

from laser_repro.paper.reported import PAPER_DATASETS, Cell, Reported, load_reported

from .output import write_markdown
from . import claims as C
from .ablation import AblationResult, compute_ablation
from .consistency import all_checks, summarize_checks, verdict
from laser_repro.experiment import layout, registry
from laser_repro.experiment.specs import CompareSpec

from .fig2 import compute_fig2
from .fig3 import compute_fig3
from .fig4 import compute_fig4
from .fig5 import compute_fig5
from .markdown import bullet_list, md_table
from .runs import Gap, METRIC_LABELS, METRICS, RunGroup, label, run_notes, stand_in_note, ties_note
from .significance import SeedSummary
from .table1 import COLUMNS as T1_COLUMNS
from .table1 import HEADERS as T1_HEADERS
from .table1 import compute_table1
from .table2 import NOT_IMPLEMENTED, RUN, Table2Result, compute_table2

CELL_HEADER = ["Paper", "Ours (mean ± std, n)", "Δ", "Δ%", "95% CI", "verdict"]


def cell_verdict(paper: float, ours: SeedSummary, tolerance: float, stand_in: str | None) -> str:
    if stand_in:
        return f"stand-in ({stand_in}), not comparable"
    if ours.n == 0:
        return "not run"
    delta_pct = (ours.mean - paper) / paper * 100 if paper else math.nan
    inside = ours.n > 1 and ours.ci_low <= paper <= ours.ci_high
    v = f"within ±{tolerance:g}%" if abs(delta_pct) <= tolerance else f"outside ±{tolerance:g}%"
    return v + ("; paper inside CI" if inside else "")


def cell_columns(paper: Cell | None, ours: SeedSummary, scale: float, decimals: int, tolerance: float,
                 stand_in: str | None, not_run_reason: str = "not run", caveats: str = "") -> list[str]:
    """The six comparison columns for one cell (``scale`` maps our fractions onto the paper's); ``caveats`` (a
    protocol difference of the run: not pre-trained, a test-user subset) follow its verdict."""
    cols = _cell_columns(paper, ours, scale, decimals, tolerance, stand_in, not_run_reason)
    if caveats and ours.n:
        cols[-1] += f"; caveat: {caveats}"
    return cols


def _cell_columns(paper: Cell | None, ours: SeedSummary, scale: float, decimals: int, tolerance: float,
                  stand_in: str | None, not_run_reason: str) -> list[str]:
    p = paper.text if paper and paper.value is not None else "—"
    if ours.n == 0:
        return [p, "—", "—", "—", "—", not_run_reason]
    m, sd = ours.mean * scale, ours.std * scale
    our_text = f"{m:.{decimals}f}" + (f" ± {sd:.{decimals}f}" if ours.n > 1 else "") + f" (n={ours.n})"
    ci = f"[{ours.ci_low * scale:.{decimals}f}, {ours.ci_high * scale:.{decimals}f}]" if ours.n > 1 else "—"
    if paper is None or paper.value is None:
        return [p, our_text, "—", "—", ci, f"stand-in ({stand_in}); no paper value" if stand_in else "no paper value"]
    delta = m - paper.value
    scaled = SeedSummary(ours.n, m, sd, ours.ci_low * scale, ours.ci_high * scale)
    return [p, our_text, f"{delta:+.{decimals}f}", f"{delta / paper.value * 100:+.1f}%", ci,
            cell_verdict(paper.value, scaled, tolerance, stand_in)]


# ---- sections -------------------------------------------------------------------------------
def section_table1(data_dir, datasets, reported: Reported) -> str:
    rows = compute_table1(data_dir, datasets, reported)
    body = []
    for r in rows:
        for col, head in zip(T1_COLUMNS, T1_HEADERS):
            paper = r.paper[col] if r.paper else "—"
            ours = r.ours[col] if r.ours else "—"
            v = ("exact match" if r.match(col) else "differs") if r.match(col) is not None else (
                r.reason if r.ours is None else "no paper value")
            body.append([r.dataset, head, paper, ours, v])
    text = "## Table 1: data statistics\n\nRounded as the paper prints them; a match must be exact.\n\n"
    return text + md_table(["Data set", "Column", "Paper", "Ours", "verdict"], body, ["l", "l", "r", "r", "l"]) + "\n"


def protocol_caveats(g: RunGroup, full_n: int) -> str:
    """How a run group's protocol differs from the paper's cell it is set against (Table 2's ‡ and §)."""
    out = []
    if g.not_pretrained():
        out.append(f"not pre-trained (‡; the paper's was, on {registry.METHODS[g.method].pretrained_on})")
    if fewer := g.fewer_users("test", full_n):
        out.append(f"a seeded subset of the test users (§; n = {', '.join(map(str, fewer))} of {full_n})")
    return ", ".join(out)


def section_table2(t2: Table2Result, reported: Reported, tolerance: float) -> str:
    body = []
    full_n = t2.full_n
    for method, row_label, _, status in t2.rows:
        spec = reported.table2_rows.get(method)
        for d in PAPER_DATASETS:
            for m in METRICS:
                paper = reported.table2(method, d, m) if spec else None
                if status != RUN:
                    why = "not implemented in this suite" if status == NOT_IMPLEMENTED else "not requested"
                    cols = cell_columns(paper, SeedSummary(0, math.nan, math.nan, math.nan, math.nan), 100, 2,
                                        tolerance, None, f"not run ({why})")
                elif d not in t2.datasets:
                    cols = cell_columns(paper, SeedSummary(0, math.nan, math.nan, math.nan, math.nan), 100, 2,
                                        tolerance, None, "not run (data set not requested)")
                else:
                    g: RunGroup = t2.groups[(method, d)]
                    cols = cell_columns(paper, t2.summaries[(method, d, m)], 100, 2, tolerance, g.stand_in(),
                                        caveats=protocol_caveats(g, full_n.get(d, 0)))
                body.append([row_label, d, METRIC_LABELS[m], *cols])
    improv = []
    for d in PAPER_DATASETS:
        for m in METRICS:
            paper = reported.table2("improv", d, m)
            col = t2.columns.get((d, m))
            ours = col.improv if col else math.nan
            if math.isnan(ours):
                improv.append([d, METRIC_LABELS[m], paper.text, "—", "—", "not run"])
            else:
                same = (ours > 0) == (paper.value > 0)
                verdict = "Laser ahead in both" if same and ours > 0 else ("sign agrees" if same else "sign differs")
                used = sorted({b for k in (col.best_laser, col.best_baseline) if (b := t2.groups[(k, d)].stand_in())})
                if used:  # a side of the margin ran on a stand-in backbone: the paper's margin is not tested
                    verdict = f"stand-in ({', '.join(used)}), not comparable; {verdict}"
                caveats = [f"{label(k)}: {c}" for k in (col.best_laser, col.best_baseline)
                           if (c := protocol_caveats(t2.groups[(k, d)], full_n.get(d, 0)))]
                if not registry.METHODS[col.best_baseline].in_paper:  # the paper's margin is over its own rows
                    caveats.append(f"best baseline {label(col.best_baseline)} is not a row of the paper's Table 2")
                if caveats:  # a side ran without its pre-training or on a subset of the test users
                    verdict += f"; caveat: {'; '.join(caveats)}"
                improv.append([d, METRIC_LABELS[m], paper.text, f"{ours:.2f}", f"{ours - paper.value:+.2f} pp", verdict])
    extra = [d for d in t2.datasets if d not in PAPER_DATASETS]
    text = "## Table 2: overall performance (test, x100)\n\n"
    text += ("Provenance: per the spec, 17 of the 20 (method, data set) pairs of SASRec, BERT4Rec, RecGURU, ZESRec "
             "and FDSA are RecFormer's published numbers (RecBole under UniSRec's settings: cross-entropy over all "
             "items, hidden 64, 2 layers, 2 heads, max length 50, patience 10); our ID models follow that protocol, "
             "and baseline numbers on this data move by 20-30% with protocol details. Each cell's provenance is in "
             "`reported.yaml`.\n\n")
    text += md_table(["Row", "Data set", "Metric", *CELL_HEADER], body, ["l", "l", "l"] + ["r"] * 5 + ["l"]) + "\n\n"
    text += "### Improv. (%): best Laser vs best baseline\n\nOurs uses only the baselines this suite runs.\n\n"
    text += md_table(["Data set", "Metric", "Paper", "Ours", "Δ", "verdict"], improv) + "\n"
    if extra:
        text += f"\nData sets without paper values (ours only, see table2.md): {', '.join(extra)}.\n"
    return text


def _recformer_ours(t2: Table2Result, d: str, m: str) -> str:
    """Our RECFORMER cell (x100) for the RECFORMER section, marked when it is a stand-in or not pre-trained."""
    g = t2.groups.get(("recformer", d))
    if g is None:
        return "not run (not requested)"
    s = t2.summaries[("recformer", d, m)]
    if not s.n:
        return "not run"
    marks = (f"; stand-in ({g.stand_in()})" if g.stand_in() else "") + ("; not pre-trained" if g.not_pretrained() else "")
    return _ms(s) + marks


def section_recformer(reported: Reported, t2: Table2Result) -> str:
    body, gaps = [], []
    for d in PAPER_DATASETS:
        for m in METRICS:
            laser = reported.table2("recformer", d, m)
            own = reported.recformer_published(d, m)
            gap = (laser.value - own.value) / own.value * 100 if own else None
            if gap is not None:
                gaps.append((d, m, gap))
            body.append([d, METRIC_LABELS[m], laser.text, own.text if own else "unknown",
                         "—" if gap is None else f"{gap:+.1f}%", _recformer_ours(t2, d, m)])
    known = "; ".join(f"{d} {METRIC_LABELS[m]}: {g:+.1f}%" for d, m, g in gaps) or "none"
    return ("## RECFORMER: the Laser paper's numbers vs RecFormer's own publication (x100)\n\n"
            "The spec says Laser's RECFORMER row is below RecFormer's published results (Scientific: 23% / 30% / 32% on "
            "R@10 / N@10 / MRR). Only published "
            "values we can source are recorded (the rest are 'unknown', never guessed); the gaps they give: "
            f"{known}.\n\n"
            + md_table(["Data set", "Metric", "Laser paper (Table 2)", "RecFormer paper", "gap",
                        "ours (mean ± std, n)"], body) + "\n")


def section_ablation(res: AblationResult, reported: Reported, tolerance: float) -> str:
    table = res.table
    paper_ds = reported.table_dataset(table)
    has_paper = res.dataset == paper_ds
    body = []
    for v in res.variants:
        for m in METRICS:
            paper = (reported.reference_main(table, m) if v == "main" else reported.ablation(table, v, m)) if has_paper else None
            cols = cell_columns(paper, res.summaries[(v, m)], 1.0, 4, tolerance, res.groups[v].stand_in(),
                                caveats=protocol_caveats(res.groups[v], res.full_n))
            body.append([res.labels[v], METRIC_LABELS[m], *cols])
    title = {"table3": "Table 3: ablations", "table4": "Table 4: ablations", "table5": "Table 5: templates"}[table]
    text = f"## {title} on {res.dataset} (test)\n\n"
    if not has_paper:
        text += f"The paper's {table.capitalize()} is on {paper_ds}; {res.dataset} has no paper values (claims below still apply).\n\n"
    if table == "table4":
        text += ("Reference for the full model on Pet: Table 2's Laser-C (0.1121 / 0.0908 / 0.0861); the printed "
                 "Table 4 row repeats Table 3's Scientific numbers (copy error, see the consistency section).\n\n")
    return text + md_table(["Row", "Metric", *CELL_HEADER], body, ["l", "l"] + ["r"] * 5 + ["l"]) + "\n"


def section_claims(claims: list[C.Claim], stand_ins: str = "", ties: str = "") -> str:
    body = [[c.where, c.text, c.paper, c.ours, f"**{c.verdict}**"] for c in claims]
    text = "## The paper's claims, checked against our runs\n\n"
    if stand_ins:
        text += (f"{stand_ins}. A claim checked on these runs tests this suite's stand-ins, not the paper's "
                 "models.\n\n")
    if ties:
        text += f"{ties}.\n\n"
    return text + md_table(["Where", "Claim", "Paper", "Ours", "verdict"], body, ["l"] * 5) + "\n"


def section_consistency(reported: Reported) -> str:
    groups = all_checks(reported)
    ok, n = summarize_checks(groups)
    text = ("## The paper's own consistency\n\nEvery quoted percentage and marker recomputed from the paper's own "
            "tables. Printed values are rounded, so a quote is consistent when it lies within the range its "
            f"operands' rounding allows. {ok} of {n} checks consistent.\n")
    for title, checks in groups.items():
        body = [[c.id, c.claim, c.quoted, c.computed, verdict(c), c.note] for c in checks]
        text += f"\n### {title}\n\n" + md_table(["Check", "What", "Printed / quoted", "Recomputed", "verdict", "note"],
                                                body, ["l"] * 6) + "\n"
    text += ("\nReference choices: Table 4's full-model reference is Table 2's Pet Laser-C; Table 3 is read with the "
             "'w/o suffix' rows corrected; the main runs use lambda = 0.01 (Appendix B), Figure 4 sweeps it.\n")
    return text


def _ms(s: SeedSummary) -> str:
    if not s.n:
        return "—"
    return f"{s.mean * 100:.2f}" + (f" ± {s.std * 100:.2f}" if s.n > 1 else "") + f" (n={s.n})"


def _dagger(*groups: RunGroup) -> str:
    """" †" when any of ``groups`` ran on a stand-in backbone (each row of a table says so, not only its notes)."""
    return " †" if any(g.stand_in() for g in groups) else ""


def section_figures(f2, f3, f4, f5) -> str:
    """The numbers behind Figures 2-5 (x100, mean ± std over seeds), so every bar is traceable."""
    text = "## The numbers behind the figures (x100, mean ± std over seeds, n; † stand-in backbone)\n"
    for note in run_notes(g for f in (f2, f3, f4, f5) for g in f.groups.values()):
        text += f"\n{note}.\n"
    body = [[d, label(m) + _dagger(f2.groups[(d, m)]), *[_ms(f2.summaries[(d, m, k)]) for k in METRICS],
             str(f2.n_cold_users.get((d, m), "—"))] for d in f2.datasets for m in f2.methods]
    text += "\n### Figure 2: cold items (test)\n\n" + md_table(
        ["Data set", "Method", *[METRIC_LABELS[k] for k in METRICS], "cold test users"], body) + "\n"
    body = [[layout.fmt_value(f), f3.series_label(m) + _dagger(f3.groups[(m, f)]), *[_ms(f3.summary(m, f, k)) for k in METRICS]]
            for f in f3.fractions for m in f3.methods + f3.baselines]
    text += f"\n### Figure 3: transfer to {f3.dataset} (test)\n\n" + md_table(
        ["Fraction", "Method", *[METRIC_LABELS[k] for k in METRICS]], body) + "\n"
    body = [[a.name, layout.fmt_value(v), f4.groups[(a.name, v)].variant + _dagger(f4.groups[(a.name, v)]),
             *[_ms(f4.summary(a.name, v, m)) for m in ("recall@10", "ndcg@10")]] for a in f4.axes for v in a.values]
    text += f"\n### Figure 4: {label(f4.method)} on {f4.dataset} (validation)\n\n" + (md_table(
        ["Axis", "Value", "Variant", "R@10", "N@10"], body) if body else "No grid requested.") + "\n"
    body = [[d, label(x) + _dagger(f5.groups[(d, "fed", x)]),
             *[_ms(f5.summary(d, kind, x, m)) for kind in ("alone", "fed") for m in METRICS]]
            for d in f5.datasets for x in f5.idrecs]
    name = label(f5.method)
    text += f"\n### Figure 5: ID recommenders alone and inside {name} (test)\n\n" + md_table(
        ["Data set", "ID model", *[f"ID {METRIC_LABELS[m]}" for m in METRICS], *[f"{name} {METRIC_LABELS[m]}" for m in METRICS]],
        body) + "\n"
    return text


def section_missing(missing: dict[str, list[Gap]]) -> str:
    text = ("## Missing runs\n\nEvery requested run that has no `metrics.json`, or whose `metrics.json` is stale "
            "(it no longer answers the run's config, data or upstream runs), by artifact.\n")
    for name, paths in missing.items():
        uniq = list(dict.fromkeys(paths))
        text += f"\n### {name} ({len(uniq)})\n\n" + bullet_list([p.markdown for p in uniq]) + "\n"
    return text


def template_thresholds(reported: Reported) -> dict[str, float]:
    """The margins the paper quotes for its template over the variants (30.06 / 18.43 / 15.22 %)."""
    quote = next(q for q in reported.text_quotes if q["id"] == "templates")
    return {chk["a"].rsplit("/", 1)[-1]: float(chk["quoted"]) for chk in quote["checks"]}


# ---- the report -------------------------------------------------------------------------------
def build_compare(spec: CompareSpec, reported: Reported | None = None) -> str:
    reported = reported or load_reported()
    tol = spec.tolerance
    t2 = compute_table2(spec.table2, reported)
    abl = {t: compute_ablation(getattr(spec, t)) for t in ("table3", "table4", "table5")}
    f2, f3 = compute_fig2(spec.fig2), compute_fig3(spec.fig3)
    f4, f5 = compute_fig4(spec.fig4), compute_fig5(spec.fig5)
    by_source = [
        (t2, [C.laser_beats_every_baseline(t2), C.backbone_order(t2, spec.table4.dataset),
              C.llm_baselines_same_backbone(t2)]),
        (abl["table3"], [C.ablations_lower_everything(abl["table3"], "scientific", "§5.5, Table 3")]),
        (abl["table4"], [C.ablations_lower_everything(abl["table4"], "pet", "App. C, Table 4")]),
        (abl["table5"], C.template_margin(abl["table5"], template_thresholds(reported))),
        (f2, [C.cold_start(f2)]), (f3, C.transfer(f3)),
        (f4, [C.grid_optimum(f4, reported.raw["hyperparameters"]["figure4_optimum"])]), (f5, [C.tracks_idrec(f5)])]
    claims = [C.with_seed_gaps(c, res.groups.values()) for res, cs in by_source for c in cs]
    missing = {"Table 2": t2.missing(), **{k.capitalize(): v.missing() for k, v in abl.items()},
               "Figure 2": f2.missing(), "Figure 3": f3.missing(), "Figure 4": f4.missing(), "Figure 5": f5.missing()}

    counts = {}
    for c in claims:
        key = "not run" if c.verdict.startswith("not run") else (
            c.verdict.split(" ")[0] + (" (partial)" if "partial" in c.verdict else ""))
        counts[key] = counts.get(key, 0) + 1
    n_missing = len({p for ps in missing.values() for p in ps})
    head = [
        "# Reported vs reproduced",
        "",
        f"Runs: `{spec.runs_root}`; seeds {', '.join(map(str, spec.seeds))}; Table 2 data sets "
        f"{', '.join(spec.table2.datasets)}; tolerance ±{tol:g}% relative. Ours = mean ± sample std over the seeds "
        "found (n); 95% CI = t interval of that mean; Δ = ours − paper on the paper's scale. Paper values come from "
        "`src/laser_repro/paper/reported.yaml` (each cell with its provenance).",
        "",
        f"Claims: {', '.join(f'{v} {k}' for k, v in counts.items())}. Missing runs: {n_missing} (listed at the end).",
        "",
    ]
    every_group = [*t2.groups.values(), *(g for a in abl.values() for g in a.groups.values()),
                   *(g for f in (f2, f3, f4, f5) for g in f.groups.values())]
    parts = ["\n".join(head), section_claims(claims, stand_in_note(every_group), ties_note(every_group)),
             section_table1(spec.table1.data_root, spec.table1.datasets, reported),
             section_table2(t2, reported, tol), section_recformer(reported, t2),
             *(section_ablation(abl[t], reported, tol) for t in ("table3", "table4", "table5")),
             section_figures(f2, f3, f4, f5), section_consistency(reported), section_missing(missing)]
    return "\n".join(parts)


def main(spec: CompareSpec, out: str) -> str:
    """CLI entry (``laser-repro artifact compare``)."""
    write_markdown(out, build_compare(spec))
    return out
