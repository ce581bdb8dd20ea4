"""The paper's reported numbers (``reported.yaml``) as typed cells with provenance.

Each printed cell is ``"VALUE [flags]"`` (flags: ``b`` bold, ``u`` underlined, ``*`` star);
:class:`Cell` keeps the printed text, its value, its number of decimals (so rounding can be
honoured when comparing) and where it comes from.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

REPORTED_PATH = Path(__file__).with_name("reported.yaml")
METRICS = ("recall@10", "ndcg@10", "mrr")
PAPER_DATASETS = ("scientific", "pet", "arts", "games")

_CELL = re.compile(r"^\s*(?P<num>[-+0-9.,eE]*)\s*(?:\[(?P<flags>[bu*]*)\])?\s*$")


@dataclass(frozen=True)
class Cell:
    """One printed number of the paper."""

    text: str  # the number as printed, e.g. "14.06", "11,041", "1.3e-3"
    value: float | None  # None: the paper prints nothing / the value is unknown
    decimals: int | None  # digits after the decimal point (None for scientific notation)
    bold: bool = False
    underline: bool = False
    star: bool = False
    provenance: str = ""

    @property
    def half_ulp(self) -> float:
        """Half a unit in the last printed digit: the rounding uncertainty of ``value``."""
        if self.decimals is None:  # "1.3e-3": mantissa digits
            mant, _, exp = self.text.lower().partition("e")
            digits = len(mant.partition(".")[2])
            return 0.5 * 10.0 ** (int(exp) - digits)
        return 0.5 * 10.0 ** (-self.decimals)


def parse_cell(raw: str | None, provenance: str = "") -> Cell:
    """Parse ``"14.06 [b*]"`` into a :class:`Cell`; ``""``/None is an empty cell."""
    if raw is None or str(raw).strip() == "":
        return Cell("", None, None, provenance=provenance)
    m = _CELL.match(str(raw))
    if not m or not m.group("num"):
        raise ValueError(f"{REPORTED_PATH}: cannot parse cell {raw!r} (expected 'NUMBER [flags]')")
    num, flags = m.group("num"), m.group("flags") or ""
    value = float(num.replace(",", ""))
    decimals = None if "e" in num.lower() else len(num.partition(".")[2])
    return Cell(num, value, decimals, "b" in flags, "u" in flags, "*" in flags, provenance)


@dataclass(frozen=True)
class Reported:
    """Typed access to ``reported.yaml``."""

    raw: dict

    # ---- Table 1 ---------------------------------------------------------------------
    def table1(self, dataset: str) -> dict[str, Cell] | None:
        t = self.raw["table1"]
        row = t["rows"].get(dataset)
        if row is None:
            return None
        return {
            col: parse_cell(v, f"{t['provenance']}, row {dataset}, column {col}")
            for col, v in zip(t["columns"], row)
        }

    # ---- Table 2 ---------------------------------------------------------------------
    @property
    def table2_rows(self) -> dict[str, dict]:
        return self.raw["table2"]["rows"]

    def table2(self, row: str, dataset: str, metric: str) -> Cell | None:
        """A Table 2 cell (x100 as printed); ``row`` may also be ``improv``."""
        t = self.raw["table2"]
        spec = t["improv"] if row == "improv" else t["rows"].get(row)
        if spec is None or dataset not in t["columns"]:
            return None
        idx = t["columns"].index(dataset) * len(METRICS) + METRICS.index(metric)
        where = f"{t['provenance']}, row {spec.get('label', row)}, column {dataset}/{metric}"
        if spec.get("provenance"):
            where += f" ({spec['provenance']})"
        return parse_cell(spec["cells"][idx], where)

    def recformer_published(self, dataset: str, metric: str) -> Cell | None:
        """RecFormer's own published value (x100), or None where it is not recorded."""
        t = self.raw["recformer_published"]
        raw = t["cells"].get(dataset, {}).get(metric)
        if raw is None:
            return None
        return parse_cell(raw, f"{t['provenance']}, {dataset}/{metric}")

    # ---- Tables 3-5 ------------------------------------------------------------------
    def ablation_rows(self, table: str) -> dict[str, dict]:
        return self.raw[table]["rows"]

    def ablation(self, table: str, row: str, metric: str) -> Cell | None:
        """A Table 3/4/5 cell as printed (fractions, not scaled)."""
        t = self.raw[table]
        spec = t["rows"].get(row)
        if spec is None:
            return None
        where = f"{t['provenance']}, row {spec['label']}, column {metric}"
        if spec.get("provenance"):
            where += f" ({spec['provenance']})"
        return parse_cell(spec["cells"][METRICS.index(metric)], where)

    def reference_main(self, table: str, metric: str) -> Cell:
        """The full model's reference cell for an ablation table (Table 4: Table 2's Pet row)."""
        t = self.raw[table]
        ref = t.get("reference_main")
        if ref is None:
            return self.ablation(table, "main", metric)
        return parse_cell(ref["cells"][METRICS.index(metric)], ref["provenance"])

    def table_dataset(self, table: str) -> str:
        return self.raw[table]["dataset"]

    @property
    def text_quotes(self) -> list[dict]:
        return self.raw["text_quotes"]


@functools.lru_cache(maxsize=4)
def load_reported(path: str | Path = REPORTED_PATH) -> Reported:
    """Load the reported numbers (cached)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: the paper's reported numbers are missing")
    return Reported(yaml.safe_load(path.read_text(encoding="utf-8")))
