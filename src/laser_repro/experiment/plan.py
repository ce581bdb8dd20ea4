"""The experiment: which runs exist, what each one trains, and what each artifact reads.

:class:`Experiment` wraps a validated workflow config. It is the one place that turns
config sections into run lists (``spec(name).runs()``), a run into its resolved run config
(``run_config``) and into the runs it depends on (``run_inputs``). The Snakefile is glue
around it; ``laser-repro artifact --config`` builds the same specs without Snakemake.

Resolution order of a run's config (later wins): the trainer dataclass defaults, the method's
registry identity (its name, its paper backbone), the run's data set and seed, the collaborative
ID-model run (methods that need one), ``run.{trainer}``, ``method_run.{method}``, then the
variant's overrides.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterable

from laser_repro.config import ConfigError, from_dict, to_dict
from laser_repro.data.dataset import CONTENT_FILES, DataChanged
from laser_repro.train.inputs import declared_inputs, role

from . import layout, registry
from .config import WorkflowConfigError, flatten, load, nest, validate
from .layout import RunKey, Variant
from .registry import Method
from .specs import (
    ArtifactSpec,
    CompareSpec,
    Fig2Spec,
    Fig3Spec,
    Fig4Spec,
    Fig5Spec,
    GridAxis,
    Table1Spec,
    Table2Spec,
    VariantTableSpec,
)

ARTIFACTS = ("table1", "table2", "table3", "table4", "table5", "fig2", "fig3", "fig4", "fig5", "compare")
VARIANT_TABLES = ("table3", "table4", "table5")


class Experiment:
    """A validated workflow config and everything derived from it."""

    def __init__(self, config: dict, where: str = "config"):
        self.config = config
        self.where = where
        self.paths: dict[str, str] = config["paths"]
        self.seeds: list[int] = [int(s) for s in config["seeds"]]
        self.datasets: dict[str, dict] = config["datasets"]
        self.collaborative: str = config["collaborative"]
        self.variants: dict[str, dict] = config["variants"]
        self.grid: dict[str, dict] = config["fig4"]["grid"]
        self._check_names()
        self._check_runs()

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], overrides: dict | None = None) -> "Experiment":
        paths = list(paths)
        return cls(load(paths, overrides), " + ".join(map(str, paths)))

    @classmethod
    def from_snakemake(cls, config: dict, files: Iterable[str] = (), overrides: Iterable[str] = ()) -> "Experiment":
        """Validate Snakemake's merged ``config`` in place (defaults filled) and wrap it; errors name ``files`` (the
        workflow's config files, in merge order) and the ``overrides`` given by ``--config`` (applied last), else
        "config"."""
        files = list(files)  # Snakemake lists --configfile files first and the Snakefile's own last: merge order
        parts = [str(f) for f in files[-1:] + files[:-1]]
        if overrides := sorted(overrides):
            parts.append(f"--config {' '.join(overrides)} (command line)")
        where = " + ".join(parts) or "config"
        return cls(validate(config, where), where)

    def _check_datasets(self) -> None:
        """What each source needs: a folder (``input``) for a RecFormer, RecBole or MovieLens one; an Amazon one a
        folder or a category `data download` knows."""
        from laser_repro.data.download import category_name

        for name, spec in self.datasets.items():
            source, key = spec["source"], f"datasets.{name}"
            if source in ("recformer", "recbole", "movielens") and "input" not in spec:
                raise self.error(key, f"source {source} reads a folder of files: set `input` to it")
            if source == "amazon2018" and "input" not in spec:
                if "category" not in spec:
                    raise self.error(key, "source amazon2018 without `input` is downloaded: set `category` (or "
                                          "`input`, a folder holding its files)")
                try:
                    category_name(spec["category"])
                except ValueError as err:
                    raise self.error(f"{key}.category", f"{err} (or set `input` to a folder holding its files)") from None
            # keys another source reads (the synthetic generator's sizes; `input`, `category`) are left unread, not
            # refused: an overlay that switches a data set's source inherits the base file's keys and cannot remove them

    def error(self, key: str, message: str) -> WorkflowConfigError:
        return WorkflowConfigError(f"{self.where}: {key}: {message}")

    # ------------------------------------------------------------------ names
    def _need(self, key: str, names: Iterable[str], allowed: Iterable[str], what: str) -> None:
        allowed = list(allowed)
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise self.error(key, f"names {unknown}, not in {what} {sorted(allowed)}")

    def _check_variant_names(self) -> None:
        """Named variants and Figure 4 axes must not look like the run names the workflow generates: a variant
        ``K~2`` once replaced Figure 4's K = 2 run, an axis ``frac`` made a grid point a low-resource run."""
        builtin = ("frac", "idrec", "xfer")
        for name in self.variants:
            if name == layout.MAIN or name in builtin or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise self.error(f"variants.{name}", "a named variant may use letters, digits, '_', '.' and '-' and "
                                 f"must not be {layout.MAIN!r} (run names with '~' or '/' are the workflow's: "
                                 "{axis}~{value}, idrec~, xfer~, frac~)")
        for axis in self.grid:
            if axis in builtin or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", axis):
                raise self.error(f"fig4.grid.{axis}", f"an axis name is a letter then letters, digits or '_', not one "
                                 f"of {list(builtin)} (the workflow's own run names)")
            if axis in self.variants:
                raise self.error(f"fig4.grid.{axis}", "also a named variant; rename one of them")
            for at in self.grid[axis].get("at") or {}:
                # looked up by the value as its run name writes it: "2.0" or "02" for K = 2 was ignored without a
                # word (a key for a value the axis no longer lists is fine: a narrowed `values` keeps config.yaml's)
                try:
                    canonical = layout.fmt_value(layout.parse_value(str(at)))
                except ValueError:
                    canonical = None
                if canonical != str(at):
                    raise self.error(f"fig4.grid.{axis}.at.{at}", "not a value as run names write it; expected "
                                     + (f"{canonical!r}" if canonical else "a number"))

    def _check_names(self) -> None:
        self._check_variant_names()
        self._check_datasets()
        c, ds, methods = self.config, list(self.datasets), list(registry.METHODS)
        self._need("run", c["run"], registry.TRAINERS, "trainers")
        self._need("method_run", c["method_run"], methods, "registered methods (laser-repro methods)")
        idrecs = registry.methods_of("idrec")
        self._need("collaborative", [self.collaborative], idrecs, "ID-model methods")
        self._need("table1.datasets", c["table1"]["datasets"], ds, "datasets")
        self._need("table2.datasets", c["table2"]["datasets"], ds, "datasets")
        self._need("table2.methods", self.table2_methods(), methods, "registered methods (laser-repro methods)")
        for name in VARIANT_TABLES:
            self._need(f"{name}.dataset", [c[name]["dataset"]], ds, "datasets")
            self._need(f"{name}.method", [c[name]["method"]], methods, "registered methods")
            self._need(f"{name}.variants", c[name]["variants"], self.variants, "variants")
        self._need("fig2.datasets", c["fig2"]["datasets"], ds, "datasets")
        self._need("fig2.methods", c["fig2"]["methods"], methods, "registered methods")
        self._need("fig3.dataset", [c["fig3"]["dataset"]], ds, "datasets")
        self._need("fig3.source", [c["fig3"]["source"]], ds, "datasets")
        self._need("fig3.methods", c["fig3"]["methods"], methods, "registered methods")
        self._need("fig3.baselines", c["fig3"]["baselines"], methods, "registered methods")
        if c["fig3"]["source"] == c["fig3"]["dataset"]:
            raise self.error("fig3.source", f"{c['fig3']['source']!r} is also fig3.dataset: a transfer needs another "
                             "data set to pre-train on")
        if both := sorted(set(c["fig3"]["methods"]) & set(c["fig3"]["baselines"])):
            raise self.error("fig3.baselines", f"{both} also in fig3.methods: a method is transferred from the source "
                             "(methods) or trained on the target only (baselines), not both")
        self._need("fig4.dataset", [c["fig4"]["dataset"]], ds, "datasets")
        self._need("fig4.method", [c["fig4"]["method"]], methods, "registered methods")
        self._need("fig5.datasets", c["fig5"]["datasets"], ds, "datasets")
        self._need("fig5.method", [c["fig5"]["method"]], methods, "registered methods")
        self._need("fig5.idrecs", c["fig5"]["idrecs"], idrecs, "ID-model methods")
        for key in ("fig4.method", "fig5.method"):
            section, _ = key.split(".")
            m = registry.METHODS[c[section]["method"]]
            if key == "fig5.method" and not m.collaborative:
                raise self.error(key, f"{m.name!r} takes no ID-model input; Figure 5 needs a method that does "
                                      f"({[x.name for x in registry.METHODS.values() if x.collaborative]})")

    def _check_runs(self) -> None:
        """Resolve every run's config now: a bad key or value fails before any job is built."""
        for key in self.all_runs():
            self.resolved(*dataclasses.astuple(key))
        self._check_grid_main_overrides()

    def _check_grid_main_overrides(self) -> None:
        """Refuse an ``at`` entry on the grid value that equals the main run's: that point reads the main run, so
        overrides the main run does not have were ignored without a word (Figure 4 plotted another config)."""
        t = self.config["fig4"]
        for axis, spec in self.grid.items():
            if not spec.get("at"):  # most axes: nothing to check, no run config resolved at start-up
                continue
            main = self.main_value(t["method"], t["dataset"], spec["key"])
            value = next((v for v in spec["values"] if layout.same_value(v, main)), None)
            if value is None:
                continue
            at = {str(k): o for k, o in spec["at"].items()}.get(layout.fmt_value(value)) or {}
            differ = {k: v for k, v in flatten(at).items()
                      if not layout.same_value(self.main_value(t["method"], t["dataset"], k), v)}
            if differ:
                raise self.error(f"fig4.grid.{axis}.at.{layout.fmt_value(value)}",
                                 f"{spec['key']} = {layout.fmt_value(value)} is the main run's value, so this point "
                                 f"reads the main run, which does not have {differ}; set them in the main config "
                                 "(or drop them)")

    def table2_methods(self) -> list[str]:
        methods = self.config["table2"]["methods"]
        return registry.table2_methods() if methods == "all" else list(methods)

    def method(self, name: str) -> Method:
        try:
            return registry.get_method(name)
        except ValueError as err:
            raise self.error("method", str(err)) from None

    # ------------------------------------------------------------------ paths
    def run_dir(self, dataset: str, method: str, variant: str, seed: int) -> str:
        return layout.run_dir(self.paths["runs"], dataset, method, variant, seed)

    def run_config_file(self, dataset: str, method: str, variant: str, seed: int) -> str:
        return layout.run_config_file(self.paths["configs"], dataset, method, variant, seed)

    def data_dir(self, dataset: str) -> str:
        return f"{self.paths['data']}/{dataset}"

    def artifact_files(self) -> list[str]:
        """Every table, figure (PNG and PDF) and compare.md the workflow writes (rule all)."""
        tables = [f"{self.paths['results']}/table{i}.md" for i in range(1, 6)]
        figures = [f"{self.paths['figures']}/fig{i}.{ext}" for i in range(2, 6) for ext in ("png", "pdf")]
        return tables + figures + [f"{self.paths['results']}/compare.md"]

    def foreign_outputs(self) -> list[str]:
        """What sits at the workflow's table, figure, data-folder and run outputs (metrics.json) that the suite did
        not write, each with why. Snakemake deletes a job's old outputs before the job (and its own guard) runs, so
        the workflow refuses these when it starts (common.smk)."""
        from laser_repro.artifacts.output import written_by_suite
        from laser_repro.data.dataset import foreign_files, is_prepared
        from laser_repro.runinfo import is_ours

        out = [f"{f}: not written by `laser-repro artifact` (no mark)" for f in map(Path, self.artifact_files())
               if f.is_file() and not written_by_suite(f)]
        for name in self.datasets:
            folder = Path(self.data_dir(name))
            if not folder.is_dir() or not any(folder.iterdir()):
                continue
            if not is_prepared(folder):
                out.append(f"{folder}: a folder `laser-repro data prepare` did not write (no stats.json / marker)")
            elif extra := foreign_files(folder):
                out.append(f"{folder}: holds files `laser-repro data prepare` did not write: {extra}")
        # the run layout's metrics.json files that a trainer did not write, then only those in the DAG (resolving every
        # run's inputs costs seconds, on every Snakemake start)
        theirs = [m for m in Path(self.paths["runs"]).glob("*/*/*/seed~*/metrics.json")
                  if m.is_file() and not is_ours(_json_or_none(m))]
        if theirs:
            trained = {Path(d) for d in self.trained_run_dirs()}
            out += [f"{m}: not a metrics.json a laser-repro trainer wrote (no resume hash)" for m in sorted(theirs)
                    if m.parent in trained]
        return out

    def spec_file(self, artifact: str) -> str:
        return f"{self.paths['results']}/specs/{artifact}.json"

    # ------------------------------------------------------------------ run configs
    def parse_variant(self, variant: str) -> Variant:
        try:
            return layout.parse_variant(variant, self.variants, self.grid)
        except ValueError as err:
            raise self.error("variant", str(err)) from None

    def variant_overrides(self, dataset: str, method: Method, variant: str, seed: int) -> dict:
        """Flat run-config overrides that make ``variant`` differ from the main run."""
        v = self.parse_variant(variant)
        if v.kind == "main":
            return {}
        if v.kind == "named":
            return flatten(self.variants[v.name])
        if v.kind == "grid":
            spec = self.grid[v.axis]
            at = {str(k): o for k, o in (spec.get("at") or {}).items()}.get(layout.fmt_value(v.value), {})
            return {spec["key"]: v.value, **flatten(at)}
        if v.kind == "frac":
            return {"train_user_fraction": v.fraction}
        if v.kind == "idrec":
            if not method.collaborative:
                raise self.error("variant", f"{variant!r}: {method.name} takes no ID-model input")
            self._need(f"variant {variant!r}", [v.idrec], registry.methods_of("idrec"), "ID-model methods")
            return {"idrec_run": self.run_dir(dataset, v.idrec, layout.MAIN, seed), "idrec_model": v.idrec}
        # xfer: start from the source's main run, train on a fraction of the target
        out: dict[str, Any] = {"init_from": self.run_dir(v.source, method.name, layout.MAIN, seed),
                               "train_user_fraction": v.fraction}
        if method.collaborative:
            out["idrec_run"] = self.run_dir(dataset, self.collaborative, layout.frac_variant(v.fraction), seed)
        return out

    def run_overrides(self, dataset: str, method: str, variant: str, seed: int) -> dict:
        """The resolved overrides of one run (nested, as written to its YAML file)."""
        m = self.method(method)
        if dataset not in self.datasets:
            raise self.error("datasets", f"data set {dataset!r} is not defined; expected one of {sorted(self.datasets)}")
        seed = int(seed)
        flat = {**m.base_config(), "dataset": self.data_dir(dataset), "seed": seed}
        if m.collaborative:
            flat["idrec_run"] = self.run_dir(dataset, self.collaborative, layout.MAIN, seed)
            flat["idrec_model"] = self.collaborative
        for key, other in m.needs_runs:  # e.g. LlamaRec's retriever: the other method's main run, same seed
            flat[key] = self.run_dir(dataset, other, layout.MAIN, seed)
        for key, overrides in ((f"run.{m.trainer.name}", self.config["run"].get(m.trainer.name, {})),
                               (f"method_run.{method}", self.config["method_run"].get(method, {}))):
            flat.update(self._not_fixed(key, m, flatten(overrides), "remove them"))
        v = self.parse_variant(variant)  # a named variant or a Figure 4 axis may not move a run to another run
        flat.update(self._not_fixed(f"fig4.grid.{v.axis}.key" if v.kind == "grid" else f"variants.{variant}", m,
                                    self.variant_overrides(dataset, m, variant, seed),
                                    f"a variant changes what run {variant!r} does, not which run it is"))
        if m.knowledge:  # KAR: the knowledge file of its generator, one per data set (rule kar_knowledge)
            generator = flat.get("knowledge_generator") or self._default(m, "knowledge_generator")
            flat["knowledge_file"] = self.knowledge_file(dataset, generator)
        return nest(flat)

    def _not_fixed(self, key: str, m: Method, overrides: dict, advice: str) -> dict:
        """``overrides`` (flat), refused under ``key`` when they set what the workflow sets for each run."""
        fixed = sorted({m.trainer.method_key, "dataset", "seed"} & set(overrides))
        if fixed:
            raise self.error(key, f"{fixed} are set by the workflow for each run (method, data set, seed); {advice}")
        return overrides

    def _default(self, m: Method, key: str):
        return getattr(m.trainer.config_cls()(), key)

    def knowledge_file(self, dataset: str, generator: str) -> str:
        return layout.knowledge_file(self.paths["results"], dataset, generator)

    def knowledge_generators(self) -> set[str]:
        """Every knowledge generator of this config: KAR's default and each ``knowledge_generator`` it sets anywhere
        (run, method_run, a variant, a Figure 4 grid)."""
        found = {self._default(m, "knowledge_generator") for m in registry.METHODS.values() if m.knowledge}

        def scan(node) -> None:
            if isinstance(node, list):
                for value in node:
                    scan(value)
            if not isinstance(node, dict):
                return
            if str(node.get("key", "")).split(".")[-1] == "knowledge_generator":  # a Figure 4 grid axis
                found.update(v for v in node.get("values") or () if isinstance(v, str))
            for key, value in node.items():
                if key.split(".")[-1] == "knowledge_generator" and isinstance(value, str):
                    found.add(value)
                scan(value)

        scan(self.config)
        return found

    def knowledge_names(self, llm: bool) -> list[str]:
        """The file names (:func:`layout.knowledge_name`) of this config's generators that run a language model
        (``llm``) or that do not (:data:`registry.KNOWLEDGE_WITHOUT_LLM`): rules kar_knowledge and kar_template."""
        return sorted(layout.knowledge_name(g) for g in self.knowledge_generators()
                      if (g not in registry.KNOWLEDGE_WITHOUT_LLM) == llm)

    def knowledge_generator(self, name: str) -> str:
        """The generator whose knowledge files are named ``name`` (:func:`layout.knowledge_name`)."""
        found = self.knowledge_generators()
        for generator in sorted(found):
            if layout.knowledge_name(generator) == name:
                return generator
        raise self.error("knowledge_generator", f"no configured knowledge generator is named {name!r} in files; "
                                                f"configured: {sorted(found)}")

    def file_inputs(self, dataset: str, method: str, variant: str, seed: int) -> dict[str, str]:
        """Files (not runs) a run reads, by role (:func:`~laser_repro.train.inputs.role` of the key): every file its
        config class declares (``INPUT_FILES``: KAR's knowledge file, RecFormer's ``init_checkpoint``), so a changed
        file reruns it, and the files of every data set it pre-trains on (``INPUT_DATASETS``; :meth:`data_files`),
        so those are prepared first. The trainers check and fingerprint the same list."""
        out: dict[str, str] = {}
        for key, path, kind in declared_inputs(self.resolved(dataset, method, variant, seed)):
            if kind == "file":
                out[role(key)] = str(path)
            elif kind == "dataset":
                out.update(self.data_files(str(path.parent), role(key)))
        return out

    @staticmethod
    def data_files(folder: str, role: str) -> dict[str, str]:
        """The files of the prepared data set ``folder`` as inputs of a job that reads it: its stats.json as ``role``,
        the others as ``role``_items, _users, _interactions. Any of them edited by hand reruns that job, and
        :func:`~laser_repro.data.dataset.data_fingerprint` then refuses the folder."""
        return {role if name == "stats.json" else f"{role}_{name.split('.')[0]}": f"{folder}/{name}"
                for name in CONTENT_FILES}

    def resolved(self, dataset: str, method: str, variant: str, seed: int):
        """The run-config dataclass of one run; errors name the run and the key."""
        m = self.method(method)
        try:
            return from_dict(m.trainer.config_cls(), self.run_overrides(dataset, method, variant, seed))
        except ConfigError as err:
            run = RunKey(dataset, method, variant, int(seed)).rel
            raise WorkflowConfigError(
                f"{self.where}: run {run}: {err} (from run.{m.trainer.name}, method_run.{method}"
                + (f" or variants/fig4.grid for {variant!r})" if variant != layout.MAIN else ")")
            ) from None

    def resolved_dict(self, dataset: str, method: str, variant: str, seed: int) -> dict:
        """Every field of the run config, defaults included (what the YAML file holds)."""
        return to_dict(self.resolved(dataset, method, variant, seed))

    def trainer_config(self, dataset: str, method: str, variant: str, seed: int):
        """The run config as its trainer reads it from the YAML file the workflow writes: every value read back
        into its field's type (a default ``32`` of a float field is 32.0 there, and hashes as such)."""
        cfg = self.resolved(dataset, method, variant, seed)
        return from_dict(type(cfg), to_dict(cfg))

    def run_inputs(self, dataset: str, method: str, variant: str, seed: int) -> dict[str, str]:
        """The run folders a run reads (its ID-model run, the run it starts from), by role; a run its config names
        but never reads (``unread_inputs``: Laser's ID model without the M-Former) is not among them."""
        cfg = self.resolved(dataset, method, variant, seed)
        out = {}
        unread = cfg.unread_inputs() if hasattr(cfg, "unread_inputs") else ()
        roles = [("idrec", "idrec_run"), ("init", "init_from")] + [(o, k) for k, o in self.method(method).needs_runs]
        for name, key in roles:
            if getattr(cfg, key, None) and key not in unread:
                out[name] = getattr(cfg, key)
        return out

    def stale_runs(self, keys: Iterable[RunKey]) -> dict[str, str]:
        """Finished runs among ``keys`` whose metrics.json no longer answers what this config asks for
        (another run config, re-prepared data, a retrained upstream run): ``key.rel`` -> why. The trainer
        would refuse or redo them; artifacts built outside the workflow show them as gaps."""
        from laser_repro.io import read_json
        from laser_repro.train.scaffold import run_folder

        out: dict[str, str] = {}
        for key in keys:
            path = Path(self.run_dir(*dataclasses.astuple(key))) / "metrics.json"
            if not path.exists():
                continue
            cfg = self.trainer_config(*dataclasses.astuple(key))  # hashed as the trainer hashed it
            if not (Path(cfg.dataset) / "stats.json").exists():
                out[key.rel] = f"its data set {cfg.dataset} is not prepared here, so it cannot be checked"
                continue
            trainer = self.method(key.method).trainer
            try:
                why = run_folder(cfg, path.parent, config=trainer.resume_config(cfg)).stale_reason(read_json(path))
            except DataChanged as err:  # its data set (or one it pre-trains on) was edited by hand since
                why = str(err)
            if why is not None:
                out[key.rel] = why
        return out

    def mark_stale(self, spec: ArtifactSpec) -> ArtifactSpec:
        """Set ``stale`` of ``spec`` (and of a comparison's parts) from :meth:`stale_runs`."""
        found = self.stale_runs(spec.runs())
        parts = list(spec.parts().values()) if isinstance(spec, CompareSpec) else []
        for s in (spec, *parts):
            s.stale = {k.rel: found[k.rel] for k in s.runs() if k.rel in found}
        return spec

    def main_value(self, method: str, dataset: str, key: str):
        """The value of dotted run-config ``key`` in ``method``'s main run on ``dataset``."""
        node = self.resolved(dataset, method, layout.MAIN, self.seeds[0])
        for part in key.split("."):
            if not hasattr(node, part):
                raise self.error("fig4.grid", f"key {key!r} is not a field of {type(node).__name__}")
            node = getattr(node, part)
        return node

    # ------------------------------------------------------------------ artifacts
    def _base(self) -> dict:
        return {"runs_root": self.paths["runs"], "seeds": list(self.seeds)}

    def spec(self, artifact: str) -> ArtifactSpec:
        """The spec of one artifact, from its config section."""
        c = self.config
        if artifact == "table1":
            return Table1Spec(data_root=self.paths["data"], datasets=list(c["table1"]["datasets"]))
        if artifact == "table2":
            return Table2Spec(**self._base(), datasets=list(c["table2"]["datasets"]), methods=self.table2_methods())
        if artifact in VARIANT_TABLES:
            t = c[artifact]
            return VariantTableSpec(**self._base(), table=artifact, dataset=t["dataset"], method=t["method"],
                                    variants=list(t["variants"]))
        if artifact == "fig2":
            t = c["fig2"]
            return Fig2Spec(**self._base(), data_root=self.paths["data"], datasets=list(t["datasets"]),
                            methods=list(t["methods"]), cold_fraction=float(t["cold_fraction"]))
        if artifact == "fig3":
            t = c["fig3"]
            return Fig3Spec(**self._base(), dataset=t["dataset"], source=t["source"], methods=list(t["methods"]),
                            baselines=list(t["baselines"]), fractions=[float(f) for f in t["fractions"]])
        if artifact == "fig4":
            t = c["fig4"]
            axes = [GridAxis(name, g["key"], list(g["values"]), self.main_value(t["method"], t["dataset"], g["key"]))
                    for name, g in self.grid.items()]
            return Fig4Spec(**self._base(), dataset=t["dataset"], method=t["method"], axes=axes)
        if artifact == "fig5":
            t = c["fig5"]
            return Fig5Spec(**self._base(), datasets=list(t["datasets"]), method=t["method"],
                            idrecs=list(t["idrecs"]), collaborative=self.collaborative)
        if artifact == "compare":
            parts = {name: self.spec(name) for name in ARTIFACTS if name != "compare"}
            return CompareSpec(**self._base(), tolerance=float(c["compare"]["tolerance"]), **parts)
        raise self.error("artifact", f"unknown artifact {artifact!r}; expected one of {list(ARTIFACTS)}")

    def all_runs(self) -> list[RunKey]:
        """Every run some artifact reads, each once."""
        return self.spec("compare").runs()

    def trained_run_dirs(self) -> list[str]:
        """The folder of every run the DAG trains: the runs artifacts read and the runs those read (LlamaRec's LRURec
        retriever, a transfer's source run), each once."""
        out = [self.run_dir(*dataclasses.astuple(k)) for k in self.all_runs()]
        for key in self.all_runs():
            out += self.run_inputs(*dataclasses.astuple(key)).values()
        return list(dict.fromkeys(out))

    def runs_of(self, artifact: str) -> list[RunKey]:
        return self.spec(artifact).runs()

    def data_read_by(self, artifact: str) -> list[str]:
        """The prepared data sets an artifact reads itself (Table 1's statistics, Figure 2's cold items)."""
        sections = {"table1": ["table1"], "fig2": ["fig2"], "compare": ["table1", "fig2"]}.get(artifact, [])
        return list(dict.fromkeys(d for s in sections for d in self.config[s]["datasets"]))


def _json_or_none(path: Path) -> Any:
    """The JSON in ``path`` (:func:`laser_repro.io.read_json`), or None when it is not valid JSON."""
    from laser_repro.io import read_json

    try:
        return read_json(path)
    except ValueError:
        return None
