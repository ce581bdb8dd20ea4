"""Helpers of the laser-repro workflow: config validation, run enumeration, run configs.

The chain is: config.yaml -> the run helpers here -> a resolved run config file
({configs}/{dataset}/{method}/{variant}/seed~{seed}.yaml, rule write_run_config) -> the
trainer CLI -> {runs}/{dataset}/{method}/{variant}/seed~{seed}/metrics.json.

A run is the tuple (dataset, method, variant, seed). Which runs exist is decided by the
artifacts (runs_* functions); what a run trains is decided by idrec_run_config /
laser_run_config, the ONE place that knows the trainers' config keys. A Laser run's
dependencies (its ID recommender, the run it is initialised from) are read off its resolved
config, so sharing is automatic: every Laser run of a data set and seed points at the same
ID-model run folder.
"""

import re

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

PATHS = config["paths"]
SEEDS = [int(s) for s in config["seeds"]]
DATASETS = config["datasets"]
IDREC_MODELS = list(config["idrec"]["models"])
COLLABORATIVE = config["idrec"]["collaborative"]
LASER_METHODS = dict(config["laser"]["methods"])
LASER_VARIANTS = config["laser"]["variants"]
FIG4_GRID = config["fig4"]["grid"]

# Run-config dataclasses, validated when a resolved config is written ("module:Class").
RUN_CONFIG_CLASSES = {
    "idrec": "laser_repro.idrec.config:IDRecRunConfig",
    "laser": "laser_repro.laser.config:LaserRunConfig",
}


class WorkflowConfigError(ValueError):
    """config.yaml names something the workflow cannot build."""


def check_names() -> None:
    """Every data set, method and variant an artifact names is defined (errors name the key)."""

    def need(key, names, defined, what):
        unknown = [n for n in names if n not in defined]
        if unknown:
            raise WorkflowConfigError(f"config: {key} names {unknown}, not in {what} {sorted(defined)}")

    methods = set(IDREC_MODELS) | set(LASER_METHODS)
    need("table1.datasets", config["table1"]["datasets"], DATASETS, "datasets")
    need("table2.datasets", config["table2"]["datasets"], DATASETS, "datasets")
    need("table2.methods", config["table2"]["methods"], methods, "idrec.models + laser.methods")
    need("idrec.collaborative", [COLLABORATIVE], IDREC_MODELS, "idrec.models")
    for name in ("table3", "table4", "table5"):
        need(f"{name}.dataset", [config[name]["dataset"]], DATASETS, "datasets")
        need(f"{name}.method", [config[name]["method"]], LASER_METHODS, "laser.methods")
        need(f"{name}.variants", config[name]["variants"], LASER_VARIANTS, "laser.variants")
    need("fig2.datasets", config["fig2"]["datasets"], DATASETS, "datasets")
    need("fig2.methods", config["fig2"]["methods"], methods, "idrec.models + laser.methods")
    need("fig3.dataset/source", [config["fig3"]["dataset"], config["fig3"]["source"]], DATASETS, "datasets")
    need("fig4.dataset", [config["fig4"]["dataset"]], DATASETS, "datasets")
    need("fig5.datasets", config["fig5"]["datasets"], DATASETS, "datasets")
    for name in ("fig3", "fig4", "fig5"):
        need(f"{name}.method", [config[name]["method"]], LASER_METHODS, "laser.methods")
    need("fig3.idrecs", config["fig3"]["idrecs"], IDREC_MODELS, "idrec.models")
    need("fig5.idrecs", config["fig5"]["idrecs"], IDREC_MODELS, "idrec.models")


check_names()


# ---------------------------------------------------------------- names and paths


def fmt_value(value) -> str:
    """A number as it appears in a variant name: 1 -> '1', 0.05 -> '0.05', 1e-4 -> '0.0001'."""
    number = float(value)
    if number.is_integer():
        return str(int(number))
    return format(number, "f").rstrip("0") if abs(number) >= 1e-6 else repr(number)


def parse_value(text: str):
    """Inverse of fmt_value: '4' -> 4, '0.05' -> 0.05."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def regex_any(names) -> str:
    """A wildcard constraint matching exactly one of ``names``."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def run_dir(dataset, method, variant, seed) -> str:
    return f"{PATHS['runs']}/{dataset}/{method}/{variant}/seed~{seed}"


def run_metrics(run) -> str:
    return f"{run_dir(*run)}/metrics.json"


def run_config_file(dataset, method, variant, seed) -> str:
    return f"{PATHS['configs']}/{dataset}/{method}/{variant}/seed~{seed}.yaml"


def data_dir(dataset) -> str:
    return f"{PATHS['data']}/{dataset}"


def data_stats(dataset) -> str:
    return f"{data_dir(dataset)}/stats.json"


def result_file(name) -> str:
    return f"{PATHS['results']}/{name}"


def figure_file(name) -> str:
    return f"{PATHS['figures']}/{name}"


def log_file(rule_name, name) -> str:
    return f"{PATHS['logs']}/{rule_name}/{name}.log"


def benchmark_file(rule_name, name) -> str:
    return f"{PATHS['benchmarks']}/{rule_name}/{name}.tsv"


def method_kind(method) -> str:
    """'idrec' or 'laser'."""
    if method in IDREC_MODELS:
        return "idrec"
    if method in LASER_METHODS:
        return "laser"
    raise WorkflowConfigError(
        f"config: method {method!r} is neither in idrec.models {IDREC_MODELS} nor in laser.methods {sorted(LASER_METHODS)}"
    )


# ---------------------------------------------------------------- run configs


def flatten(mapping, prefix="") -> dict:
    """{'a': {'b': 1}, 'c.d': 2} -> {'a.b': 1, 'c.d': 2}."""
    flat = {}
    for key, value in (mapping or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def nest(flat) -> dict:
    """{'a.b': 1, 'c': 2} -> {'a': {'b': 1}, 'c': 2}."""
    nested = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def fig3_idrec_variant(fraction) -> str:
    """The ID-model variant trained on ``fraction`` of the training users (1 = main)."""
    return "main" if float(fraction) == 1.0 else f"frac~{fmt_value(fraction)}"


def fig5_variant(idrec) -> str:
    """The Laser variant fed by ``idrec`` (the collaborative default = main)."""
    return "main" if idrec == COLLABORATIVE else f"idrec~{idrec}"


def laser_main_value(key):
    """The value of dotted run-config ``key`` in a main run of Figure 4's method."""
    overrides = flatten(config["laser"]["run"])
    overrides.update(flatten(config["laser"]["method_run"].get(config["fig4"]["method"], {})))
    if key in overrides:
        return overrides[key]
    node = run_config_class("laser")()
    for part in key.split("."):
        if not hasattr(node, part):
            raise WorkflowConfigError(f"config: fig4.grid key {key!r} is not a LaserRunConfig field")
        node = getattr(node, part)
    return node


def fig4_main(axis):
    return laser_main_value(FIG4_GRID[axis]["key"])


def fig4_variants() -> list:
    """Grid variants ({axis}~{value}) except the points equal to the main config."""
    variants = []
    for axis, spec in FIG4_GRID.items():
        main = float(fig4_main(axis))
        variants += [f"{axis}~{fmt_value(v)}" for v in spec["values"] if float(v) != main]
    return variants


def laser_variant_overrides(dataset, method, variant, seed) -> dict:
    """Flat run-config overrides that make ``variant`` differ from the main run."""
    if variant == "main":
        return {}
    if variant in LASER_VARIANTS:
        return flatten(LASER_VARIANTS[variant])
    name, _, value = variant.partition("~")
    if name in FIG4_GRID:
        spec = FIG4_GRID[name]
        return {spec["key"]: parse_value(value), **flatten(spec.get("at", {}).get(value, {}))}
    if name == "idrec" and value in IDREC_MODELS:
        return {"idrec_run": run_dir(dataset, value, "main", seed), "idrec_model": value}
    match = re.fullmatch(r"xfer~(?P<source>[^/~]+)-frac~(?P<frac>[0-9.e-]+)", variant)
    if match:
        fraction = parse_value(match["frac"])
        return {
            "init_from": run_dir(match["source"], method, "main", seed),
            "train_user_fraction": float(fraction),
            "idrec_run": run_dir(dataset, COLLABORATIVE, fig3_idrec_variant(fraction), seed),
        }
    raise WorkflowConfigError(
        f"config: Laser variant {variant!r} is unknown; expected main, a key of laser.variants "
        f"{sorted(LASER_VARIANTS)}, {{axis}}~{{value}} for a fig4.grid axis {sorted(FIG4_GRID)}, "
        f"idrec~{{model}} with a model of idrec.models, or xfer~{{source}}-frac~{{fraction}}"
    )


def laser_run_config(dataset, method, variant, seed) -> dict:
    """The resolved overrides of one Laser run (nested, as the YAML file)."""
    seed = int(seed)
    flat = {
        "dataset": data_dir(dataset),
        "method": method,
        "backbone": LASER_METHODS[method],
        "idrec_run": run_dir(dataset, COLLABORATIVE, "main", seed),
        "idrec_model": COLLABORATIVE,
        "seed": seed,
    }
    flat.update(flatten(config["laser"]["run"]))
    flat.update(flatten(config["laser"]["method_run"].get(method, {})))
    flat.update(laser_variant_overrides(dataset, method, variant, seed))
    return nest(flat)


def idrec_run_config(dataset, method, variant, seed) -> dict:
    """The resolved overrides of one ID-model run (nested, as the YAML file)."""
    flat = {"dataset": data_dir(dataset), "model": method, "seed": int(seed)}
    flat.update(flatten(config["idrec"]["run"]))
    name, _, value = variant.partition("~")
    if name == "frac":
        flat["train_user_fraction"] = float(parse_value(value))
    elif variant != "main":
        raise WorkflowConfigError(
            f"config: ID-model variant {variant!r} is unknown; expected main or frac~{{fraction}}"
        )
    return nest(flat)


def run_config(dataset, method, variant, seed) -> dict:
    if method_kind(method) == "idrec":
        return idrec_run_config(dataset, method, variant, seed)
    return laser_run_config(dataset, method, variant, seed)


def run_config_class(kind):
    import importlib

    module_name, _, class_name = RUN_CONFIG_CLASSES[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def write_run_config(path, kind, overrides) -> None:
    """Validate ``overrides`` against the trainer's dataclass; write the resolved YAML atomically."""
    import yaml
    from laser_repro.config import ConfigError, from_dict, to_dict
    from laser_repro.io import write_text

    try:
        resolved = to_dict(from_dict(run_config_class(kind), overrides))
    except ConfigError as err:
        raise WorkflowConfigError(f"{path}: {err} (from config.yaml via workflow/rules/common.smk)") from None
    header = "# Resolved run config written by the workflow (rule write_run_config); do not edit.\n"
    write_text(path, header + yaml.safe_dump(resolved, sort_keys=False))


# ---------------------------------------------------------------- input functions


def params_run_config(wildcards) -> dict:
    return run_config(wildcards.dataset, wildcards.method, wildcards.variant, wildcards.seed)


def params_run_kind(wildcards) -> str:
    return method_kind(wildcards.method)


def params_run_dir(wildcards) -> str:
    return run_dir(wildcards.dataset, wildcards.method, wildcards.variant, wildcards.seed)


def train_inputs(wildcards) -> dict:
    """A training job's inputs: its config, its data and the runs its config points at."""
    inputs = {
        "config": run_config_file(wildcards.dataset, wildcards.method, wildcards.variant, wildcards.seed),
        "data": data_stats(wildcards.dataset),
    }
    if method_kind(wildcards.method) == "laser":
        resolved = params_run_config(wildcards)
        for name, key in (("idrec", "idrec_run"), ("init", "init_from")):
            if resolved.get(key):
                inputs[name] = f"{resolved[key]}/metrics.json"
    return inputs


def dataset_spec(dataset) -> dict:
    if dataset not in DATASETS:
        raise WorkflowConfigError(f"config: data set {dataset!r} is not a key of datasets {sorted(DATASETS)}")
    return DATASETS[dataset]


def raw_dir(dataset) -> str:
    return f"{PATHS['raw']}/{dataset}"


def prepare_inputs(wildcards) -> dict:
    """amazon2018 without `input` is downloaded first; everything else reads its own input."""
    spec = dataset_spec(wildcards.dataset)
    if spec["source"] == "amazon2018" and "input" not in spec:
        return {"raw": f"{raw_dir(wildcards.dataset)}/downloads.json"}
    return {}


def prepare_args(wildcards) -> str:
    """Command-line flags of `laser-repro data prepare` for one data set."""
    spec = dataset_spec(wildcards.dataset)
    source = spec["source"]
    args = ["--source", source, "--input", spec.get("input", raw_dir(wildcards.dataset))]
    if source == "amazon2018" and "category" in spec:
        args += ["--category", spec["category"]]
    if source == "synthetic":
        for key in ("seed", "users", "items", "categories"):
            if key in spec:
                args += [f"--{key}", str(spec[key])]
    return " ".join(args)


def download_category(wildcards) -> str:
    spec = dataset_spec(wildcards.dataset)
    if "category" not in spec:
        raise WorkflowConfigError(f"config: datasets.{wildcards.dataset}.category is needed to download it")
    return spec["category"]


def runs_root(wildcards) -> str:
    """The runs root (a param function: artifacts read run folders by their layout)."""
    return PATHS["runs"]


def data_root(wildcards) -> str:
    return PATHS["data"]


# ---------------------------------------------------------------- runs per artifact


def runs_table2() -> list:
    t = config["table2"]
    return [(d, m, "main", s) for d in t["datasets"] for m in t["methods"] for s in SEEDS]


def runs_variant_table(name) -> list:
    t = config[name]
    return [(t["dataset"], t["method"], v, s) for v in ["main", *t["variants"]] for s in SEEDS]


def runs_fig2() -> list:
    t = config["fig2"]
    return [(d, m, "main", s) for d in t["datasets"] for m in t["methods"] for s in SEEDS]


def runs_fig3() -> list:
    t = config["fig3"]
    runs = []
    for f in t["fractions"]:
        runs += [(t["dataset"], t["method"], f"xfer~{t['source']}-frac~{fmt_value(f)}", s) for s in SEEDS]
        runs += [(t["dataset"], m, fig3_idrec_variant(f), s) for m in t["idrecs"] for s in SEEDS]
    return runs


def runs_fig4() -> list:
    t = config["fig4"]
    return [(t["dataset"], t["method"], v, s) for v in ["main", *fig4_variants()] for s in SEEDS]


def runs_fig5() -> list:
    t = config["fig5"]
    runs = []
    for d in t["datasets"]:
        for m in t["idrecs"]:
            runs += [(d, t["method"], fig5_variant(m), s) for s in SEEDS]
            runs += [(d, m, "main", s) for s in SEEDS]
    return runs


def all_runs() -> list:
    runs = runs_table2() + runs_fig2() + runs_fig3() + runs_fig4() + runs_fig5()
    for name in ("table3", "table4", "table5"):
        runs += runs_variant_table(name)
    return list(dict.fromkeys(runs))


def metrics_of(runs) -> list:
    return [run_metrics(r) for r in dict.fromkeys(runs)]


# ---------------------------------------------------------------- artifact arguments


def seeds_arg() -> str:
    return " ".join(str(s) for s in SEEDS)


def fig4_args() -> str:
    grid = " ".join(
        f"--grid {axis}={','.join(fmt_value(v) for v in spec['values'])}" for axis, spec in FIG4_GRID.items()
    )
    main = " ".join(f"--main {axis}={fmt_value(fig4_main(axis))}" for axis in FIG4_GRID)
    return f"{grid} {main}"


def fig3_fractions_arg() -> str:
    return " ".join(fmt_value(f) for f in config["fig3"]["fractions"])


def all_artifacts() -> list:
    tables = [result_file(f"table{i}.md") for i in range(1, 6)]
    figures = [figure_file(f"fig{i}.{ext}") for i in range(2, 6) for ext in ("png", "pdf")]
    return tables + figures + [result_file("compare.md")]


def variant_table_metrics(wildcards) -> list:
    return metrics_of(runs_variant_table(wildcards.table))


def variant_table_dataset(wildcards) -> str:
    return config[wildcards.table]["dataset"]


def compare_args() -> str:
    """Every option of `laser-repro artifact compare`: the union of the tables' and figures'."""
    t3, t4, t5, f2, f3, f4, f5 = (config[k] for k in ("table3", "table4", "table5", "fig2", "fig3", "fig4", "fig5"))
    datasets = " ".join(dict.fromkeys(config["table1"]["datasets"] + config["table2"]["datasets"]))
    return " ".join(
        [
            f"--runs-root {PATHS['runs']} --data-dir {PATHS['data']} --datasets {datasets} --seeds {seeds_arg()}",
            f"--table3-dataset {t3['dataset']} --table4-dataset {t4['dataset']} --table5-dataset {t5['dataset']}",
            f"--cold-datasets {' '.join(f2['datasets'])}",
            f"--xfer-dataset {f3['dataset']} --source {f3['source']} --fractions {fig3_fractions_arg()}",
            f"--grid-dataset {f4['dataset']} {fig4_args()}",
            f"--idrec-datasets {' '.join(f5['datasets'])} --idrecs {' '.join(f5['idrecs'])} --default-idrec {COLLABORATIVE}",
        ]
    )
