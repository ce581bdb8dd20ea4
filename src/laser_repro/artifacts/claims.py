"""The paper's claims, each checked against our runs: holds / fails / not run.

Every check is a pure function of the computed artifacts (Table 2, Tables 3-5, Figures 2-5)
and compares means over seeds; where only part of a claim could be checked, the verdict is
on the checked part and says how much was missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations

from .ablation import AblationResult
from .fig2 import Fig2Data
from .fig3 import Fig3Data
from laser_repro.experiment.layout import same_value

from .fig4 import Fig4Data
from .fig5 import Fig5Data
from .runs import METRIC_LABELS, METRICS, is_ours, label
from .significance import ALPHA
from .table2 import GROUP_TITLES, RUN, Table2Result

HOLDS, FAILS, NOT_RUN = "holds", "fails", "not run"


@dataclass(frozen=True)
class Claim:
    id: str
    where: str
    text: str
    paper: str  # the paper's evidence
    ours: str  # our evidence
    verdict: str  # holds / fails / not run


def _verdict(results: list[bool], n_parts: int) -> str:
    if not results:
        return NOT_RUN
    v = HOLDS if all(results) else FAILS
    if len(results) < n_parts:
        v += f" (partial: {len(results)} of {n_parts} parts run)"
    return v


def with_seed_gaps(claim: Claim, groups) -> Claim:
    """``claim`` with its verdict marked partial when the artifact it was checked on averaged some cells over fewer
    seeds than requested (a missing or stale seed leaves a mean of the others, which the verdict must not hide)."""
    short = sorted({f"{g.label} {len(g.runs)} of {len(g.seeds)}" for g in groups if 0 < len(g.runs) < len(g.seeds)})
    if not short or claim.verdict.startswith(NOT_RUN):
        return claim
    return replace(claim, verdict=f"{claim.verdict} (partial: fewer seeds than requested in its artifact: "
                                  f"{', '.join(short)})")


def _role(dataset: str, paper: str) -> str:
    return dataset if dataset == paper else f"{dataset} (in {paper.capitalize()}'s role)"


def _m(s) -> float:
    return s.mean if s.n else math.nan


def untested_note(n: int) -> str:
    """", k untested (no per-user ranks)" for cells whose paired test could not run, else ""."""
    return f", {n} untested (no per-user ranks)" if n else ""


def subset_note(t2: Table2Result, methods) -> str:
    """"; § on a subset of the test users: ..." for the rows among ``methods`` that tested fewer users than their
    data set has (Table 2's §): their means and the rows they are set against come from other users."""
    fewer = sorted({f"{label(m)} on {d}" for (m, d), g in t2.groups.items() if m in methods and d in t2.full_n
                    and g.fewer_users("test", t2.full_n[d])})
    return f"; § on a subset of the test users: {', '.join(fewer)}" if fewer else ""


def laser_beats_every_baseline(t2: Table2Result) -> Claim:
    parts, ahead, sig, untested, missing = [], 0, 0, 0, []
    for (d, m), col in t2.columns.items():
        if not (col.best_laser and col.best_baseline):
            missing.append(f"{d} {METRIC_LABELS[m]}")
            continue
        lo, hi = t2.summaries[(col.best_laser, d, m)].mean, t2.summaries[(col.best_baseline, d, m)].mean
        parts.append(lo > hi)
        ahead += lo > hi
        sig += col.star
        untested += col.test is None  # no per-user ranks on a side: no test ran (not "not significant")
    ours = (f"best Laser ahead of the best run baseline in {ahead} of {len(parts)} columns "
            f"({sig} significant at p < {ALPHA}{untested_note(untested)})") if parts else \
        "no column with both Laser and baseline runs"
    if missing:
        ours += f"; not run: {', '.join(missing)}"
    ours += subset_note(t2, {m for col in t2.columns.values() for m in (col.best_laser, col.best_baseline) if m})
    # requested baselines without runs in a checked column: "every baseline" was not all checked
    unrun = sorted({label(b) for (d, m), col in t2.columns.items() if col.best_laser and col.best_baseline
                    for b in t2.baselines() if not t2.summaries[(b, d, m)].n})
    verdict = _verdict(parts, len(t2.columns))
    if parts and unrun:
        ours += f"; requested baselines without runs: {', '.join(unrun)}"
        verdict = (verdict[:-1] + f"; without {', '.join(unrun)})" if verdict.endswith(")")
                   else f"{verdict} (partial: without {', '.join(unrun)})")
    return Claim("t2-all", "§5.2, Table 2", "Laser beats every baseline on every data set and metric",
                 "every Improv. cell positive (4.10%-14.53%), all 12 starred", ours, verdict)


def backbone_order(t2: Table2Result, dataset: str, metric: str = "recall@10") -> Claim:
    text = f"Laser-L > Laser-C > Laser-G on {_role(dataset, 'pet')} {METRIC_LABELS[metric]}"
    paper = "Pet R@10: 11.67 > 11.21 > 9.83 (+18.7% and +14.0% over Laser-G)"
    keys = [(m, dataset, metric) for m in ("laser-l", "laser-c", "laser-g")]
    if dataset not in t2.datasets or any(k not in t2.summaries or not t2.summaries[k].n for k in keys):
        return Claim("t2-backbones", "§5.2", text, paper, f"needs laser-l, laser-c and laser-g on {dataset}", NOT_RUN)
    lv, cv, gv = (t2.summaries[k].mean * 100 for k in keys)
    return Claim("t2-backbones", "§5.2", text, paper, f"{lv:.2f} / {cv:.2f} / {gv:.2f}",
                 HOLDS if lv > cv > gv else FAILS)


def llm_baselines_same_backbone(t2: Table2Result) -> Claim:
    """Each Laser row against the other rows of its backbone's group, per data set and metric."""
    text = "Laser beats the LLM-based baselines on the same backbone (LLM4REC, KAR, LlamaRec)"
    paper = "every Laser row above its backbone's baseline"
    parts, txt, n_parts = [], [], 0
    groups = {g for _, _, g, _ in t2.rows if g != "traditional"}
    for group in sorted(groups):
        rows = [(m, status) for m, _, g, status in t2.rows if g == group]
        ours = [m for m, _ in rows if is_ours(m)]  # a Laser row not run leaves its comparisons unchecked
        others = [m for m, _ in rows if not is_ours(m)]
        for a in ours:
            for b in others:
                for d in t2.datasets:
                    for metric in METRICS:
                        n_parts += 1
                        sa, sb = t2.summaries.get((a, d, metric)), t2.summaries.get((b, d, metric))
                        if not (sa and sb and sa.n and sb.n):
                            continue
                        parts.append(sa.mean > sb.mean)
                        if sa.mean <= sb.mean:
                            txt.append(f"{label(a)} ≤ {label(b)} on {d} {METRIC_LABELS[metric]}")
    if not parts:
        run = sorted({label(m) for m, _, g, s in t2.rows if g in groups and not is_ours(m) and s == RUN})
        why = "no LLM-based baseline was run" if not run else f"no Laser row run next to {', '.join(run)}"
        return Claim("t2-llm", "§5.2", text, paper, why, NOT_RUN)
    ours = f"{sum(parts)} of {len(parts)} (row, data set, metric) comparisons won"
    if txt:
        ours += "; lost: " + ", ".join(txt)
    ours += subset_note(t2, {m for m, _, g, _ in t2.rows if g in groups})
    return Claim("t2-llm", "§5.2", text, paper, ours + f" ({', '.join(GROUP_TITLES[g] for g in sorted(groups))})",
                 _verdict(parts, n_parts))


def ablations_lower_everything(res: AblationResult, paper_dataset: str, where: str) -> Claim:
    text = f"removing any module lowers all three metrics on {_role(res.dataset, paper_dataset)}"
    paper = "every ablation row below Laser-C in every metric"
    parts, worse, sig, untested = [], [], 0, 0
    full = {m: res.summaries[("main", m)] for m in METRICS}
    if not all(s.n for s in full.values()):
        return Claim(f"{res.table}-lower", where, text, paper, "full model not run", NOT_RUN)
    n_parts = (len(res.variants) - 1) * len(METRICS)
    for v in res.variants[1:]:
        for m in METRICS:
            s = res.summaries[(v, m)]
            if not s.n:
                continue
            parts.append(s.mean < full[m].mean)
            if s.mean >= full[m].mean:
                worse.append(f"{res.labels[v]} {METRIC_LABELS[m]}")
            sig += res.starred(v, m)  # as Tables 3-5 star it: the paired test and the seeds' means agree
            untested += (v, m) not in res.tests
    ours = (f"{sum(parts)} of {len(parts)} (variant, metric) cells below the full model "
            f"({sig} significant{untested_note(untested)})")
    if worse:
        ours += f"; not lower: {', '.join(worse)}"
    return Claim(f"{res.table}-lower", where, text, paper, ours, _verdict(parts, n_parts))


def template_margin(res: AblationResult, thresholds: dict[str, float]) -> list[Claim]:
    """Table 5: the template beats every variant, and by more than the paper's margins."""
    found = [v for v in res.variants[1:] if res.summaries[(v, "recall@10")].n]
    full_ok = res.summaries[("main", "recall@10")].n
    if not found or not full_ok:
        return [Claim("t5-beats", "App. D, Table 5", "the paper's template beats the three variants",
                      "all three variants below", "not run", NOT_RUN),
                Claim("t5-margin", "App. D, Table 5", "... by more than 30.06% / 18.43% / 15.22% (R@10 / N@10 / MRR)",
                      "30.06% / 18.43% / 15.22%", "not run", NOT_RUN)]
    gains = {m: min((res.summaries[("main", m)].mean / res.summaries[(v, m)].mean - 1) * 100
                    if res.summaries[(v, m)].mean else math.inf for v in found) for m in METRICS}
    n = len(res.variants) - 1
    ours = " / ".join(f"{gains[m]:.2f}%" for m in METRICS) + f" (smallest gain over {len(found)} variants)"
    beats = _verdict([gains[m] > 0 for m in METRICS], len(METRICS))
    margin = _verdict([gains[m] > thresholds[m] for m in METRICS], len(METRICS))
    if len(found) < n:  # the paper's margin is the smallest over all variants: the others may be smaller
        beats, margin = (f"{v} (partial: {len(found)} of {n} variants run)" for v in (beats, margin))
    return [
        Claim("t5-beats", "App. D, Table 5", "the paper's template beats the three variants", "all three variants below",
              ours, beats),
        Claim("t5-margin", "App. D, Table 5", "... by more than 30.06% / 18.43% / 15.22% (R@10 / N@10 / MRR)",
              " / ".join(f"{thresholds[m]:.2f}%" for m in METRICS), ours, margin),
    ]


def _names(methods) -> str:
    return " / ".join(label(m) for m in methods) or "—"


def _versus(pairs, value) -> tuple[list[bool], list[str], int]:
    """Compare ``value(a, metric)`` > ``value(b, metric)`` over ``pairs`` x METRICS (missing skipped)."""
    parts, txt, n = [], [], 0
    for a, b, where in pairs:
        for m in METRICS:
            n += 1
            va, vb = value(a, m), value(b, m)
            if math.isnan(va) or math.isnan(vb):
                continue
            parts.append(va > vb)
            txt.append(f"{where}{label(a)} vs {label(b)} {METRIC_LABELS[m]} {va * 100:.2f} vs {vb * 100:.2f}")
    return parts, txt, n


def cold_start(f2: Fig2Data) -> Claim:
    ours = [m for m in f2.methods if is_ours(m)]
    others = [m for m in f2.methods if not is_ours(m)]
    parts, txt, n = [], [], 0
    for d in f2.datasets:
        p, t, k = _versus([(a, b, f"{d} ") for a in ours for b in others],
                          lambda x, m, d=d: _m(f2.summaries[(d, x, m)]))
        parts, txt, n = parts + p, txt + t, n + k
    return Claim("fig2", "§5.3, Figure 2",
                 f"{_names(ours)} beats {_names(others)} on cold items ({', '.join(f2.datasets)})",
                 "Laser-C above BERT4Rec on Pet and Games (bars only)", "; ".join(txt) or "not run", _verdict(parts, n))


def transfer(f3: Fig3Data) -> list[Claim]:
    """Figure 3: the transferred Laser rows against every other curve, zero-shot and at 5% vs 100%."""
    out = []
    zero = next((f for f in f3.fractions if float(f) == 0), None)
    full = next((f for f in f3.fractions if float(f) == 1), None)
    five = next((f for f in f3.fractions if float(f) == 0.05), None)
    where = "§5.4, Figure 3"
    tgt = _role(f3.dataset, "scientific")
    ours = [m for m in f3.methods if is_ours(m)]
    others = [m for m in f3.methods + f3.baselines if not is_ours(m)]
    pairs = [(a, b, "") for a in ours for b in others]
    text = f"zero-shot {_names(ours)} (trained on {f3.source}) beats {_names(others)} on {tgt}"
    if zero is None:
        out.append(Claim("fig3-zero", where, text, "bars only", "fraction 0 not requested", NOT_RUN))
    else:
        parts, txt, n = _versus(pairs, lambda x, m: _m(f3.summary(x, zero, m)))
        out.append(Claim("fig3-zero", where, text, "Laser best in the zero-shot setting (figure only)",
                         "; ".join(txt) or "not run", _verdict(parts, n)))
    text = f"{_names(ours)} with 5% of the training users of {tgt} beats {_names(others)} with 100%"
    if five is None or full is None:
        out.append(Claim("fig3-five", where, text, "figure only", "fractions 0.05 and 1 must both be requested", NOT_RUN))
    else:
        parts, txt, n = _versus(pairs, lambda x, m: _m(f3.summary(x, five if x in ours else full, m)))
        out.append(Claim("fig3-five", where, text, "figure only", "; ".join(txt) or "not run", _verdict(parts, n)))
    return out


def grid_optimum(f4: Fig4Data, optimum: dict[str, str]) -> Claim:
    """Figure 4: the paper's optimum has the best validation NDCG@10 of its grid (all points run)."""
    parts, txt = [], []
    keys = [a.name for a in f4.axes if a.name in optimum]
    for k in keys:
        values = f4.axis(k).values
        found = [v for v in values if f4.groups[(k, v)].found]
        if not any(same_value(v, optimum[k]) for v in values):
            txt.append(f"{k}: paper optimum {optimum[k]} not in the grid")
            continue
        if len(found) < len(values):
            txt.append(f"{k}: {len(values) - len(found)} of {len(values)} grid points not run")
            continue
        best = f4.best_value(k, "ndcg@10")
        parts.append(same_value(best, optimum[k]))
        txt.append(f"{k}: best {best:g} (paper {optimum[k]})")
    return Claim("fig4", "§5.6.2, Figure 4",
                 f"the best validation NDCG@10 is at {', '.join(f'{k}={optimum[k]}' for k in keys) or 'the paper optimum'}",
                 "K=8, L=32, lambda=0.1, one suffix token", "; ".join(txt) or "not run", _verdict(parts, len(keys)))


def tracks_idrec(f5: Fig5Data, metric: str = "mrr") -> Claim:
    parts, txt = [], []
    n_parts = 0
    for d in f5.datasets:
        for x, y in combinations(f5.idrecs, 2):
            n_parts += 1
            vals = [_m(f5.summary(d, k, r, metric)) for k in ("alone", "fed") for r in (x, y)]
            if any(math.isnan(v) for v in vals):
                continue
            id_x, id_y, la_x, la_y = vals
            agree = (id_x - id_y) * (la_x - la_y) > 0
            parts.append(agree)
            txt.append(f"{d} {x} vs {y}: ID {100 * (id_x / id_y - 1):+.1f}%, "
                       f"{label(f5.method)} {100 * (la_x / la_y - 1):+.1f}%")
    return Claim("fig5", "§5.6.1, Figure 5",
                 f"{label(f5.method)}'s {METRIC_LABELS[metric]} ranks the ID recommenders as they rank themselves",
                 "Pet: Laser-C(BERT4Rec) +16.08% over Laser-C(SASRec), BERT4Rec +15.38% over SASRec "
                 "(MRR: inferred, the paper names no metric)",
                 "; ".join(txt) or "not run", _verdict(parts, n_parts))
