"""The run layout and the variant names: built AND parsed here, nowhere else.

A run is ``(dataset, method, variant, seed)``; its folder is
``{runs}/{dataset}/{method}/{variant}/seed~{seed}/`` and its resolved config
``{configs}/{dataset}/{method}/{variant}/seed~{seed}.yaml`` (Snakemake's ``key~value`` path
convention). Variant names:

============================  ============================================================
``main``                      the method as configured (Table 2)
``NAME``                      a named variant of ``variants:`` (Tables 3-5)
``{axis}~{value}``            a Figure 4 grid point (``K~4``, ``lambda~0.1``)
``idrec~{model}``             Laser fed by another ID recommender (Figure 5)
``xfer~{source}-frac~{f}``    initialised from the source's main run, trained on a fraction f
                              of the target's training users (Figure 3; f = 0: zero-shot)
``frac~{f}``                  trained on a fraction f of the training users only (f = 1: main)
============================  ============================================================
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from dataclasses import dataclass
from typing import Iterable

MAIN = "main"


@dataclass(frozen=True, order=True)
class RunKey:
    """One run."""

    dataset: str
    method: str
    variant: str
    seed: int

    @property
    def rel(self) -> str:
        """``{dataset}/{method}/{variant}/seed~{seed}``."""
        return f"{self.dataset}/{self.method}/{self.variant}/seed~{self.seed}"


def run_dir(runs_root: str, dataset: str, method: str, variant: str, seed: int) -> str:
    """A run folder: ``{runs_root}/{dataset}/{method}/{variant}/seed~{seed}``."""
    return f"{runs_root}/{RunKey(dataset, method, variant, int(seed)).rel}"


def run_config_file(configs_root: str, dataset: str, method: str, variant: str, seed: int) -> str:
    return f"{configs_root}/{RunKey(dataset, method, variant, int(seed)).rel}.yaml"


def input_files(folder: str) -> list[str]:
    """The files under a data set's raw ``input`` folder (the prepare job's inputs), or the folder itself when it
    is missing, so Snakemake names it as the missing input."""
    root = Path(folder)
    files = sorted(str(p) for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    return files or [folder]


def knowledge_file(results_root: str, dataset: str, generator: str) -> str:
    """KAR's knowledge texts of one data set and generator (shared by every seed and run)."""
    return f"{results_root}/knowledge/{dataset}/{knowledge_name(generator)}.json"


def knowledge_name(generator: str) -> str:
    """A knowledge generator's name in file names: its own name, or for ``local:PATH`` ``local~`` and a digest of
    PATH (a path's slashes and dots never reach a file name, so the file stays in its data set's folder)."""
    if generator.startswith("local:"):
        return "local~" + hashlib.sha256(generator[len("local:"):].encode()).hexdigest()[:16]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", generator):
        raise ValueError(f"knowledge generator {generator!r} cannot name a file; expected a model name or local:PATH")
    return generator


# ---------------------------------------------------------------- values in names


def fmt_value(value) -> str:
    """A number as it appears in a variant name, exactly (two values never share a name): 1 -> '1',
    0.05 -> '0.05', 1e-4 -> '0.0001', 2.5e-6 -> '2.5e-06' (six decimals would round it to '0.000003')."""
    number = float(value)
    if number.is_integer():
        return str(int(number))
    text = format(number, "f").rstrip("0")
    return text if float(text) == number else repr(number)


def parse_value(text: str) -> int | float:
    """Inverse of :func:`fmt_value`: '4' -> 4, '0.05' -> 0.05."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def same_value(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


# ---------------------------------------------------------------- builders


def frac_variant(fraction) -> str:
    """Trained on ``fraction`` of the training users (1 = the main run)."""
    return MAIN if float(fraction) == 1.0 else f"frac~{fmt_value(fraction)}"


def xfer_variant(source: str, fraction) -> str:
    """Initialised from ``source``'s main run, trained on ``fraction`` of the target's users."""
    return f"xfer~{source}-frac~{fmt_value(fraction)}"


def idrec_variant(idrec: str, collaborative: str) -> str:
    """Fed by ID model ``idrec`` (the configured collaborative model = the main run)."""
    return MAIN if idrec == collaborative else f"idrec~{idrec}"


def grid_variant(axis: str, value, main_value) -> str:
    """A Figure 4 point (the point equal to the main config = the main run)."""
    return MAIN if same_value(value, main_value) else f"{axis}~{fmt_value(value)}"


# ---------------------------------------------------------------- parser


@dataclass(frozen=True)
class Variant:
    """A parsed variant name (fields unused by its kind are None)."""

    kind: str  # main | named | grid | idrec | xfer | frac
    name: str
    axis: str | None = None
    value: int | float | None = None
    idrec: str | None = None
    source: str | None = None
    fraction: float | None = None


_XFER = re.compile(r"xfer~(?P<source>[^/~]+)-frac~(?P<frac>[0-9.e-]+)")
_NUMBER = re.compile(r"-?[0-9.]+(e-?[0-9]+)?")


def parse_variant(name: str, named: Iterable[str] = (), axes: Iterable[str] = ()) -> Variant:
    """Parse ``name``; ``named`` are the variants of ``variants:``, ``axes`` the Figure 4 axes.

    Raises ValueError naming the grammar when ``name`` fits none of it.
    """
    named, axes = set(named), set(axes)
    if name == MAIN:
        return Variant("main", name)
    if name in named:
        return Variant("named", name)
    match = _XFER.fullmatch(name)
    if match:
        return Variant("xfer", name, source=match["source"], fraction=float(parse_value(match["frac"])))
    key, sep, value = name.partition("~")
    if sep and key == "frac" and _NUMBER.fullmatch(value):
        return Variant("frac", name, fraction=float(parse_value(value)))
    if sep and key == "idrec" and value:
        return Variant("idrec", name, idrec=value)
    if sep and key in axes and _NUMBER.fullmatch(value):
        return Variant("grid", name, axis=key, value=parse_value(value))
    raise ValueError(
        f"variant {name!r} is unknown; expected main, a key of variants {sorted(named)}, "
        f"{{axis}}~{{value}} for a fig4.grid axis {sorted(axes)}, idrec~{{model}}, "
        "xfer~{source}-frac~{fraction} or frac~{fraction}"
    )
