"""The paper's own consistency: every quoted percentage and marker recomputed from its tables.

Printed values are rounded, so each recomputation is an interval: every operand may lie
anywhere within half a unit of its last printed digit. A quoted number is *consistent* when
its own rounding interval overlaps the recomputed interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from laser_repro.experiment.registry import METHODS
from laser_repro.paper.reported import METRICS, Cell, Reported, load_reported

from .table1 import fmt_stat

LASER_ROWS = tuple(m.name for m in METHODS.values() if m.ours)


@dataclass(frozen=True)
class Check:
    """One consistency check of the paper against itself."""

    id: str
    where: str
    claim: str
    quoted: str
    computed: str
    consistent: bool | None  # None: cannot be checked
    note: str = ""


# ---- references and interval arithmetic --------------------------------------------------
def _best(reported: Reported, dataset: str, metric: str, lasers: bool) -> Cell:
    rows = [r for r in reported.table2_rows if (r in LASER_ROWS) == lasers]
    cells = [reported.table2(r, dataset, metric) for r in rows]
    return max(cells, key=lambda c: c.value)


def resolve(reported: Reported, ref: str) -> Cell:
    """A cell reference from ``reported.yaml: text_quotes`` (see the comment there)."""
    parts = ref.split("/")
    if parts[0] == "table2" and len(parts) == 4:
        _, row, dataset, metric = parts
        if row in ("best-laser", "best-baseline"):
            return _best(reported, dataset, metric, row == "best-laser")
        cell = reported.table2(row, dataset, metric)
    elif parts[0] in ("table3", "table4", "table5") and len(parts) == 3:
        cell = reported.ablation(parts[0], parts[1], parts[2])
    else:
        raise ValueError(f"reported.yaml: bad cell reference {ref!r}")
    if cell is None or cell.value is None:
        raise ValueError(f"reported.yaml: reference {ref!r} names no printed value")
    return cell


def _interval(c: Cell) -> tuple[float, float]:
    return c.value - c.half_ulp, c.value + c.half_ulp


def ratio_interval(a: Cell, b: Cell) -> tuple[float, float, float]:
    """(a/b at printed values, lowest, highest) over the rounding intervals (positive values)."""
    (alo, ahi), (blo, bhi) = _interval(a), _interval(b)
    return a.value / b.value, alo / bhi, ahi / blo


def formula_interval(formula: str, a: Cell | list[Cell], b: Cell | list[Cell]) -> tuple[float, float, float]:
    """Value, low, high in % of gain (a/b-1), drop (1-a/b), min_gain or min_drop."""
    if formula == "gain":
        v, lo, hi = ratio_interval(a, b)
        return 100 * (v - 1), 100 * (lo - 1), 100 * (hi - 1)
    if formula == "drop":
        v, lo, hi = ratio_interval(a, b)
        return 100 * (1 - v), 100 * (1 - hi), 100 * (1 - lo)
    if formula == "min_gain":
        parts = [formula_interval("gain", a, bi) for bi in b]
    elif formula == "min_drop":
        parts = [formula_interval("drop", ai, b) for ai in a]
    else:
        raise ValueError(f"reported.yaml: unknown formula {formula!r}; expected gain, drop, min_gain, min_drop")
    return min(p[0] for p in parts), min(p[1] for p in parts), min(p[2] for p in parts)


def quoted_consistent(quoted: str, lo: float, hi: float) -> bool:
    """The quoted number's rounding interval overlaps [lo, hi]."""
    decimals = len(quoted.partition(".")[2])
    half = 0.5 * 10.0 ** (-decimals)
    q = float(quoted)
    return q + half >= lo and q - half <= hi


# ---- the checks ----------------------------------------------------------------------------
def _metric_of(ref: str | list[str]) -> str:
    return (ref[0] if isinstance(ref, list) else ref).rsplit("/", 1)[-1]


def quote_checks(reported: Reported) -> list[Check]:
    """Each quoted percentage vs its formula; ``match: any`` quotes pass if any check fits."""
    out = []
    for quote in reported.text_quotes:
        if not quote["checks"]:
            out.append(Check(quote["id"], quote["where"], quote["text"], "—", "—", None,
                             "not recomputable: the paper prints no numbers for this figure"))
            continue
        rows = []
        for chk in quote["checks"]:
            a, b = (_resolve_any(reported, chk[k]) for k in ("a", "b"))
            v, lo, hi = formula_interval(chk["formula"], a, b)
            text = f"{v:.2f}% ({chk['formula']}, {_metric_of(chk['a'])}; rounding range {lo:.2f}..{hi:.2f})"
            rows.append((chk["quoted"], text, quoted_consistent(chk["quoted"], lo, hi), _metric_of(chk["a"])))
        if quote.get("match") == "any":
            fits = [m for _, _, ok, m in rows if ok]
            out.append(Check(quote["id"], quote["where"], quote["text"], rows[0][0] + "%",
                             "; ".join(t for _, t, _, _ in rows), bool(fits),
                             f"fits {', '.join(fits)} only" if fits else "fits no metric"))
        else:
            out += [Check(f"{quote['id']}[{k}]", quote["where"], quote["text"], q + "%", t, ok)
                    for k, (q, t, ok, _) in enumerate(rows)]
    return out


def _resolve_any(reported: Reported, ref: str | list[str]) -> Cell | list[Cell]:
    return [resolve(reported, x) for x in ref] if isinstance(ref, list) else resolve(reported, ref)


def improv_checks(reported: Reported) -> list[Check]:
    """Table 2's Improv. row: (best Laser / best baseline - 1), all printed rows included."""
    out = []
    for d in reported.raw["table2"]["columns"]:
        for m in METRICS:
            cell = reported.table2("improv", d, m)
            la, ba = _best(reported, d, m, True), _best(reported, d, m, False)
            v, lo, hi = formula_interval("gain", la, ba)
            out.append(Check(f"improv/{d}/{m}", "Table 2, Improv. row", f"Improv. {d} {m}", cell.text + "%",
                             f"{v:.2f}% (range {lo:.2f}..{hi:.2f}; {la.text} vs {ba.text})",
                             quoted_consistent(cell.text, lo, hi)))
    return out


def table2_marker_checks(reported: Reported) -> list[Check]:
    """Bold = best Laser row, underline = best baseline row, per column, as printed vs recomputed."""
    out = []
    rows = list(reported.table2_rows)
    for d in reported.raw["table2"]["columns"]:
        for m in METRICS:
            cells = {r: reported.table2(r, d, m) for r in rows}
            for kind, pool, flag in (("bold", LASER_ROWS, "bold"), ("underline", [r for r in rows if r not in LASER_ROWS], "underline")):
                best_v = max(cells[r].value for r in pool)
                best = sorted(r for r in pool if cells[r].value == best_v)
                printed = sorted(r for r in rows if getattr(cells[r], flag))
                ok = printed == best
                out.append(Check(f"markers/table2/{kind}/{d}/{m}", "Table 2 markers",
                                 f"{kind} in {d} {m}", ", ".join(printed) or "none", ", ".join(best), ok))
    return out


def ablation_marker_checks(reported: Reported) -> list[Check]:
    """Tables 3-5: bold = best, underline = second best, as printed vs recomputed."""
    out = []
    for table in ("table3", "table4", "table5"):
        rows = list(reported.ablation_rows(table))
        for m in METRICS:
            cells = {r: reported.ablation(table, r, m) for r in rows}
            order = sorted(rows, key=lambda r: -cells[r].value)
            for kind, want in (("bold", order[:1]), ("underline", order[1:2])):
                printed = sorted(r for r in rows if getattr(cells[r], kind))
                out.append(Check(f"markers/{table}/{kind}/{m}", f"{table.capitalize()} markers", f"{kind} {m}",
                                 ", ".join(printed) or "none", ", ".join(want), printed == sorted(want)))
    return out


def table1_checks(reported: Reported) -> list[Check]:
    """Avg. n = inters/users and density = inters/(users x items) from the printed counts."""
    out = []
    for d in reported.raw["table1"]["rows"]:
        c = reported.table1(d)
        u, i, x = c["users"].value, c["items"].value, c["interactions"].value
        for col, val in (("avg_n", x / u), ("density", x / (u * i))):
            ours = fmt_stat(col, val)
            out.append(Check(f"table1/{d}/{col}", "Table 1", f"{d} {col}", c[col].text, ours, ours == c[col].text))
    return out


def note_checks(reported: Reported) -> list[Check]:
    """The copy error of Table 4, the shifted rows of Table 3, and lambda 0.01 vs 0.1."""
    t4 = [reported.ablation("table4", "main", m).text for m in METRICS]
    t3 = [reported.ablation("table3", "main", m).text for m in METRICS]
    t2 = [reported.table2("laser-c", "pet", m).text for m in METRICS]
    lam = reported.raw["hyperparameters"]["lambda"]
    return [
        Check("table4-copy", "Table 4 vs Tables 2-3", "Table 4's Laser-C (Pet) row",
              " / ".join(t4), f"Table 3 (Scientific): {' / '.join(t3)}; Table 2 (Pet, x100): {' / '.join(t2)}",
              t4 != t3, "copy error: Table 4 repeats Table 3's Scientific row; compare.md uses Table 2's Pet "
                        "values (/100) as Table 4's reference"),
        Check("table3-shift", "Table 3 (text version)", "the two 'w/o suffix' rows",
              "header line 0.0579/0.0425/0.0481; 'w/ average pooling' 0.1004/0.0725/0.0683; 'w/ [EOS]' empty",
              "average pooling = 0.0579/0.0425/0.0481, [EOS] = 0.1004/0.0725/0.0683", None,
              reported.raw["table3"]["note"]),
        Check("lambda", "Appendix B vs §5.6.2", "loss weight lambda", f"App. B: {lam['appendix_b']}",
              f"§5.6.2: {lam['section_5_6_2']} best", False, lam["note"]),
    ]


def all_checks(reported: Reported | None = None) -> dict[str, list[Check]]:
    reported = reported or load_reported()
    return {
        "Percentages quoted in the text": quote_checks(reported),
        "Table 2 Improv. row": improv_checks(reported),
        "Table 1 derived columns": table1_checks(reported),
        "Bold / underline markers": table2_marker_checks(reported) + ablation_marker_checks(reported),
        "Known problems": note_checks(reported),
    }


def verdict(c: Check) -> str:
    return {True: "consistent", False: "INCONSISTENT", None: "note"}[c.consistent]


def summarize_checks(groups: dict[str, Sequence[Check]]) -> tuple[int, int]:
    flat = [c for cs in groups.values() for c in cs if c.consistent is not None]
    return sum(c.consistent for c in flat), len(flat)
