# Training: one resolved run config per run, then the trainer CLI on it. A killed trainer
# resumes from {run}/checkpoint.pt (not an output, so Snakemake never deletes it); its
# outputs are written atomically at the end, so they exist only when complete. A checkpoint
# older than the run's config file belongs to an earlier config (the trainers refuse it):
# the rule removes it, so a changed config restarts the run instead of failing.


rule write_run_config:
    output:
        f"{PATHS['configs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}.yaml",
    params:
        kind=params_run_kind,
        run=params_run_config,
    log:
        log_file("write_run_config", "{dataset}/{method}/{variant}/seed~{seed}"),
    run:
        write_run_config(output[0], params.kind, params.run)


rule train_idrec:
    input:
        unpack(train_inputs),
    output:
        metrics=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/metrics.json",
        ranks=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/ranks.npz",
        model=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/model.pt",
    params:
        out=params_run_dir,
    log:
        log_file("train_idrec", "{dataset}/{method}/{variant}/seed~{seed}"),
    benchmark:
        benchmark_file("train_idrec", "{dataset}/{method}/{variant}/seed~{seed}")
    wildcard_constraints:
        method=regex_any(IDREC_MODELS),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "if [ -e {params.out}/checkpoint.pt ] && [ {input.config} -nt {params.out}/checkpoint.pt ]; then "
        "echo 'removing {params.out}/checkpoint.pt: older than {input.config}' > {log}; "
        "rm -f {params.out}/checkpoint.pt; fi; "
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "laser-repro train-idrec --config {input.config} --out {params.out} >> {log} 2>&1"


rule train_laser:
    input:
        unpack(train_inputs),
    output:
        metrics=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/metrics.json",
        ranks=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/ranks.npz",
        model=f"{PATHS['runs']}/{{dataset}}/{{method}}/{{variant}}/seed~{{seed}}/model.pt",
    params:
        out=params_run_dir,
    log:
        log_file("train_laser", "{dataset}/{method}/{variant}/seed~{seed}"),
    benchmark:
        benchmark_file("train_laser", "{dataset}/{method}/{variant}/seed~{seed}")
    wildcard_constraints:
        method=regex_any(LASER_METHODS),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "if [ -e {params.out}/checkpoint.pt ] && [ {input.config} -nt {params.out}/checkpoint.pt ]; then "
        "echo 'removing {params.out}/checkpoint.pt: older than {input.config}' > {log}; "
        "rm -f {params.out}/checkpoint.pt; fi; "
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "laser-repro train-laser --config {input.config} --out {params.out} >> {log} 2>&1"
