"""What each artifact reads: one spec per table / figure, and the runs behind each of its cells.

A spec is computed from the artifact's section of the workflow config
(:meth:`laser_repro.experiment.plan.Experiment.spec`), written to
``{results}/specs/{artifact}.json`` by the workflow, and read by ``laser-repro artifact NAME
--spec FILE``. The Snakefile asks the same spec for its rule inputs (:meth:`ArtifactSpec.runs`),
so a table reads exactly the runs that were trained for it. Variant names come from
:mod:`laser_repro.experiment.layout`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from laser_repro.config import ConfigError, from_dict

from . import layout
from .layout import RunKey


@dataclass(frozen=True)
class Cell:
    """The seeds of one (dataset, method, variant): one table cell or one bar / point."""

    dataset: str
    method: str
    variant: str = layout.MAIN

    def runs(self, seeds) -> list[RunKey]:
        return [RunKey(self.dataset, self.method, self.variant, int(s)) for s in seeds]


@dataclass
class ArtifactSpec:
    """Base: where runs live and which seeds a cell averages."""

    runs_root: str = ""
    seeds: list[int] = field(default_factory=list)
    # finished runs the artifact must not use, RunKey.rel -> why (set by Experiment.mark_stale)
    stale: dict[str, str] = field(default_factory=dict)
    # the validated workflow config the spec was written from (the workflow sets it): the artifact job checks every
    # run against it (Experiment.mark_stale), so a run of an older config is a gap even where Snakemake's params
    # trigger was off (`--rerun-triggers mtime`, a lost .snakemake/, results copied in)
    workflow: dict = field(default_factory=dict)

    def cells(self) -> dict:
        return {}

    def runs(self) -> list[RunKey]:
        out: list[RunKey] = []
        for cell in self.cells().values():
            out += cell.runs(self.seeds)
        return list(dict.fromkeys(out))


@dataclass
class Table1Spec(ArtifactSpec):
    data_root: str = ""
    datasets: list[str] = field(default_factory=list)


@dataclass
class Table2Spec(ArtifactSpec):
    datasets: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)  # rows the suite runs

    def cells(self) -> dict[tuple[str, str], Cell]:
        """(method, dataset) -> the main run."""
        return {(m, d): Cell(d, m) for m in self.methods for d in self.datasets}


@dataclass
class VariantTableSpec(ArtifactSpec):
    table: str = ""  # table3 | table4 | table5
    dataset: str = ""
    method: str = ""
    variants: list[str] = field(default_factory=list)  # rows besides the full model

    @property
    def rows(self) -> list[str]:
        return [layout.MAIN, *self.variants]

    def cells(self) -> dict[str, Cell]:
        return {v: Cell(self.dataset, self.method, v) for v in self.rows}


@dataclass
class Fig2Spec(ArtifactSpec):
    data_root: str = ""
    datasets: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    cold_fraction: float = 0.35

    def cells(self) -> dict[tuple[str, str], Cell]:
        """(dataset, method) -> the main run."""
        return {(d, m): Cell(d, m) for d in self.datasets for m in self.methods}


@dataclass
class Fig3Spec(ArtifactSpec):
    dataset: str = ""  # target
    source: str = ""
    methods: list[str] = field(default_factory=list)  # transferred from the source
    baselines: list[str] = field(default_factory=list)  # target data only
    fractions: list[float] = field(default_factory=list)

    def cells(self) -> dict[tuple[str, float], Cell]:
        """(method, fraction) -> the run trained on that fraction of the target."""
        out = {}
        for f in self.fractions:
            for m in self.methods:
                out[(m, f)] = Cell(self.dataset, m, layout.xfer_variant(self.source, f))
            for m in self.baselines:
                out[(m, f)] = Cell(self.dataset, m, layout.frac_variant(f))
        return out


@dataclass
class GridAxis:
    name: str = ""  # axis label, e.g. K
    key: str = ""  # dotted run-config key it sets
    values: list[float] = field(default_factory=list)
    main: float | int | str | None = None  # the main run's value of `key`


@dataclass
class Fig4Spec(ArtifactSpec):
    dataset: str = ""
    method: str = ""
    axes: list[GridAxis] = field(default_factory=list)

    def cells(self) -> dict[tuple[str, float], Cell]:
        """(axis, value) -> the grid point's run (the main run where the value is the main one)."""
        return {(a.name, v): Cell(self.dataset, self.method, layout.grid_variant(a.name, v, a.main))
                for a in self.axes for v in a.values}


@dataclass
class Fig5Spec(ArtifactSpec):
    datasets: list[str] = field(default_factory=list)
    method: str = ""
    idrecs: list[str] = field(default_factory=list)
    collaborative: str = ""

    def cells(self) -> dict[tuple[str, str, str], Cell]:
        """(dataset, 'alone' | 'fed', idrec) -> the ID model alone, or the method fed by it."""
        out = {}
        for d in self.datasets:
            for x in self.idrecs:
                out[(d, "alone", x)] = Cell(d, x)
                out[(d, "fed", x)] = Cell(d, self.method, layout.idrec_variant(x, self.collaborative))
        return out


@dataclass
class CompareSpec(ArtifactSpec):
    tolerance: float = 15.0
    table1: Table1Spec = field(default_factory=Table1Spec)
    table2: Table2Spec = field(default_factory=Table2Spec)
    table3: VariantTableSpec = field(default_factory=VariantTableSpec)
    table4: VariantTableSpec = field(default_factory=VariantTableSpec)
    table5: VariantTableSpec = field(default_factory=VariantTableSpec)
    fig2: Fig2Spec = field(default_factory=Fig2Spec)
    fig3: Fig3Spec = field(default_factory=Fig3Spec)
    fig4: Fig4Spec = field(default_factory=Fig4Spec)
    fig5: Fig5Spec = field(default_factory=Fig5Spec)

    def parts(self) -> dict[str, ArtifactSpec]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith(("table", "fig"))}

    def runs(self) -> list[RunKey]:
        out: list[RunKey] = []
        for part in self.parts().values():
            out += part.runs()
        return list(dict.fromkeys(out))


SPECS: dict[str, type[ArtifactSpec]] = {
    "table1": Table1Spec, "table2": Table2Spec, "table3": VariantTableSpec, "table4": VariantTableSpec,
    "table5": VariantTableSpec, "fig2": Fig2Spec, "fig3": Fig3Spec, "fig4": Fig4Spec, "fig5": Fig5Spec,
    "compare": CompareSpec,
}


def to_json(spec: ArtifactSpec) -> dict:
    return dataclasses.asdict(spec)


def load_spec(artifact: str, path: str | Path) -> ArtifactSpec:
    """Read ``laser-repro artifact`` spec file ``path`` for ``artifact``; errors name the file and key."""
    from laser_repro.io import read_json

    data = read_json(path)
    try:
        return from_dict(SPECS[artifact], data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
