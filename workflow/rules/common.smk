"""Glue between Snakemake and the experiment model (laser_repro.experiment).

The chain is: config.yaml -> Experiment (validates the config, resolves every run) -> a
resolved run config ({configs}/{dataset}/{method}/{variant}/seed~{seed}.yaml, rule
write_run_config) -> the method's trainer CLI -> {runs}/.../metrics.json; and per artifact:
its spec ({results}/specs/{artifact}.json, rule write_artifact_spec) -> `laser-repro artifact`.
Which runs exist, what each trains and what each artifact reads are decided in the package
(laser_repro.experiment.plan), never here.
"""

import json
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from laser_repro.experiment import host, layout, registry
from laser_repro.experiment.plan import Experiment

EXP = Experiment.from_snakemake(config, workflow.configfiles, workflow.config_settings.config)
PATHS = EXP.paths
DATASETS = EXP.datasets
if FOREIGN := EXP.foreign_outputs():  # Snakemake would delete them before the jobs' own guards run
    raise WorkflowError("refusing to start: these outputs were not written by this suite, and a job would delete "
                        "them (move them away, or point `paths` elsewhere):\n  " + "\n  ".join(FOREIGN))


def regex_any(names) -> str:
    """A wildcard constraint matching exactly one of ``names`` (none: nothing, as an empty one would match all)."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"


GPUS = host.gpu_count()


def job_threads(wildcards) -> int:
    """On a GPU host a job through a language model takes every core: it runs alone (experiment.host)."""
    return host.job_threads(getattr(wildcards, "method", None), workflow.resource_settings.cores, GPUS)


def methods_computing(compute) -> list:
    return [m.name for m in registry.METHODS.values() if m.compute == compute]


def log_file(rule_name, name) -> str:
    return f"{PATHS['logs']}/{rule_name}/{name}.log"


def benchmark_file(rule_name, name) -> str:
    return f"{PATHS['benchmarks']}/{rule_name}/{name}.tsv"


def run_key(wildcards) -> tuple:
    return wildcards.dataset, wildcards.method, wildcards.variant, int(wildcards.seed)


def metrics_of(runs) -> list:
    return [f"{EXP.run_dir(r.dataset, r.method, r.variant, r.seed)}/metrics.json" for r in runs]


# ---------------------------------------------------------------- training


def params_run_config(wildcards) -> str:
    """The resolved run config as JSON (rule write_run_config passes it to `laser-repro write-config`)."""
    return json.dumps(EXP.resolved_dict(*run_key(wildcards)))


def params_run_dir(wildcards) -> str:
    return EXP.run_dir(*run_key(wildcards))


def params_train_command(wildcards) -> str:
    return registry.get_method(wildcards.method).trainer.command


def train_inputs(wildcards) -> dict:
    """A training job's inputs: its config, its data and the runs its config points at."""
    inputs = {"config": EXP.run_config_file(*run_key(wildcards)), **data_files_of(wildcards)}
    for role, run in EXP.run_inputs(*run_key(wildcards)).items():
        inputs[role] = f"{run}/metrics.json"
    return {**inputs, **EXP.file_inputs(*run_key(wildcards))}


def data_files_of(wildcards) -> dict:
    """The run's data set's files (stats.json as `data`): one edited by hand reruns its jobs, which refuse it."""
    return EXP.data_files(EXP.data_dir(wildcards.dataset), "data")


# ---------------------------------------------------------------- data


def dataset_spec(dataset) -> dict:
    return DATASETS[dataset]


def raw_dir(dataset) -> str:
    return f"{PATHS['raw']}/{dataset}"


def prepare_inputs(wildcards) -> dict:
    """amazon2018 without `input` is downloaded first; a data set with `input` reads the files under it (so a
    changed raw file prepares it again); a synthetic one reads nothing."""
    spec = dataset_spec(wildcards.dataset)
    if spec["source"] == "amazon2018" and "input" not in spec:
        return {"raw": f"{raw_dir(wildcards.dataset)}/downloads.json"}
    if "input" in spec and spec["source"] != "synthetic":
        return {"raw": layout.input_files(spec["input"])}
    return {}


def prepare_args(wildcards) -> str:
    """Command-line flags of `laser-repro data prepare` for one data set."""
    spec = dataset_spec(wildcards.dataset)
    source = spec["source"]
    # a synthetic data set writes its raw files into its own raw folder, never an inherited `input`
    args = ["--source", source, "--input", spec["input"] if "input" in spec and source != "synthetic"
            else raw_dir(wildcards.dataset)]
    if source == "amazon2018" and "category" in spec:
        args += ["--category", spec["category"]]
    if source == "synthetic":
        for key in ("seed", "users", "items", "categories"):
            if key in spec:
                args += [f"--{key}", str(spec[key])]
    return " ".join(map(shlex.quote, args))  # an input path with a space stays one argument


def download_category(wildcards) -> str:
    spec = dataset_spec(wildcards.dataset)
    if "category" not in spec:
        raise ValueError(f"config: datasets.{wildcards.dataset}.category is needed to download it")
    return spec["category"]


# ---------------------------------------------------------------- artifacts


def params_artifact_spec(wildcards) -> str:
    from laser_repro.experiment.specs import to_json

    return json.dumps({**to_json(EXP.spec(wildcards.artifact)), "workflow": EXP.config})  # its job checks each run


def artifact_inputs(artifact):
    """An artifact's spec, the metrics of every run it reads, and the files of the data sets it reads."""
    return {
        "spec": EXP.spec_file(artifact),
        "metrics": metrics_of(EXP.runs_of(artifact)),
        "stats": [f for d in EXP.data_read_by(artifact) for f in EXP.data_files(EXP.data_dir(d), "data").values()],
    }


def variant_table_inputs(wildcards) -> dict:
    return artifact_inputs(wildcards.table)


def all_artifacts() -> list:
    return EXP.artifact_files()
