# laser-repro: the Laser paper's experiment grid (README.md, docs/workflow.md).
#   snakemake --cores 2 --configfile workflow/default.yaml   # embedded default, offline, minutes
#   snakemake --cores 8                                       # the paper (config.yaml), GPU machine
#   snakemake --profile slurm                                 # the paper on a SLURM cluster
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/artifacts.smk"


localrules:
    all,
    download_raw,
    write_run_config,
    write_artifact_spec,
    make_table1,
    make_table2,
    make_variant_table,
    plot_fig2,
    plot_fig3,
    plot_fig4,
    plot_fig5,
    compare_to_paper,


wildcard_constraints:
    dataset=regex_any(DATASETS),
    method=regex_any(registry.METHODS),
    seed=r"0|[1-9]\d*",  # as run folders name seeds (seed~00 would train seed~0)
    generator=r"[A-Za-z0-9][A-Za-z0-9_.~-]*",
    variant=r"[^/]+",


rule all:
    input:
        all_artifacts(),
    default_target: True
