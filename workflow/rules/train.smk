# Training: one resolved run config per run (it records its data set's fingerprint, so new data
# rewrites exactly the configs of that data set and reruns exactly their runs), then the
# method's trainer CLI on it (the command comes from the registry: laser-repro methods). Three
# rules by cost, so that the SLURM profile can give each its resources: train_small (ID models,
# minutes on CPUs), train_small_gpu (ID-sized models over text a frozen language model encodes
# first: FDSA, ZESRec, KAR) and train_large (through a language-model backbone, hours on a GPU).
# A killed trainer resumes from {run}/checkpoint.pt (not an output, so Snakemake never deletes
# it); its outputs are written atomically at the end, so they exist only when complete. A
# checkpoint of another config or data set is stale: --replace-stale sets it aside in {run}/stale/ and starts
# the run over (taken back if that config returns).


rule write_run_config:
    input:
        unpack(data_files_of),
    output:
        f"{PATHS['configs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}.yaml",
    params:
        run=params_run_config,
    log:
        log_file("write_run_config", "{dataset}/{method}/{variant}/seed~{seed}"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro write-config run --json {params.run:q} --data {input.data} --out {output} > {log} 2>&1"


TRAIN_SHELL = (
    "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
    "laser-repro {params.command} --config {input.config} --out {params.out} --replace-stale > {log} 2>&1"
)


# One training rule per cost class (registry.Method.compute): train_small, train_small_gpu, train_large.
for COMPUTE in registry.COMPUTE:

    rule:
        name:
            f"train_{COMPUTE}"
        input:
            unpack(train_inputs),
        output:
            metrics=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/metrics.json",
            ranks=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/ranks.npz",
            model=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/model.pt",
        params:
            out=params_run_dir,
            command=params_train_command,
        threads: job_threads
        log:
            log_file(f"train_{COMPUTE}", "{dataset}/{method}/{variant}/seed~{seed}"),
        benchmark:
            benchmark_file(f"train_{COMPUTE}", "{dataset}/{method}/{variant}/seed~{seed}")
        wildcard_constraints:
            method=regex_any(methods_computing(COMPUTE)),
        conda:
            "../envs/laser-repro.yaml"
        shell:
            TRAIN_SHELL


# KAR's knowledge texts for a data set (generated once, shared by every KAR run of it): kar_knowledge for a
# generator that runs a language model (hours on a GPU), kar_template for one that does not (seconds on a CPU).
for LLM, RULE in ((True, "kar_knowledge"), (False, "kar_template")):

    rule:
        name:
            RULE
        input:
            unpack(data_files_of),
        output:
            f"{PATHS['results']}/knowledge/{{dataset}}/{{generator}}.json",
        params:
            data=lambda wildcards, input: str(Path(input.data).parent),
            generator=lambda wildcards: EXP.knowledge_generator(wildcards.generator),
            prompts=registry.KNOWLEDGE_PROMPT_VERSION,
        threads: job_threads if LLM else 1
        log:
            log_file(RULE, "{dataset}/{generator}"),
        wildcard_constraints:
            generator=regex_any(EXP.knowledge_names(llm=LLM)),
        conda:
            "../envs/laser-repro.yaml"
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} laser-repro kar-knowledge --data {params.data:q} "
            "--generator {params.generator:q} --out {output:q} > {log} 2>&1"
