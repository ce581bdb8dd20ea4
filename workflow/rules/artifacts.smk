# Artifacts: one rule per table / figure, reading run folders only (never training). Each reads
# its spec ({results}/specs/{artifact}.json: its config section resolved into the runs of every
# cell, by laser_repro.experiment.plan); the rule's inputs are exactly those runs.


rule write_artifact_spec:
    input:  # an edited config file rewrites the spec (and its check of every run) under any rerun trigger
        lambda wildcards: [f for f in workflow.configfiles if Path(f).is_file()],
    output:
        f"{PATHS['results']}/specs/{{artifact}}.json",
    params:
        spec=params_artifact_spec,
    log:
        log_file("write_artifact_spec", "{artifact}"),
    wildcard_constraints:
        artifact="table[1-5]|fig[2-5]|compare",
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro write-config spec --json {params.spec:q} --out {output} > {log} 2>&1"


rule make_table1:
    input:
        **artifact_inputs("table1"),
    output:
        report(f"{PATHS['results']}/table1.md", caption="../report/table1.rst", category="Tables"),
    log:
        log_file("make_table1", "table1"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact table1 --spec {input.spec} --out {output} > {log} 2>&1"


rule make_table2:
    input:
        **artifact_inputs("table2"),
    output:
        report(f"{PATHS['results']}/table2.md", caption="../report/table2.rst", category="Tables"),
    log:
        log_file("make_table2", "table2"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact table2 --spec {input.spec} --out {output} > {log} 2>&1"


rule make_variant_table:
    input:
        unpack(variant_table_inputs),
    output:
        report(f"{PATHS['results']}/{{table}}.md", caption="../report/variant_table.rst", category="Tables"),
    log:
        log_file("make_variant_table", "{table}"),
    wildcard_constraints:
        table="table3|table4|table5",
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact {wildcards.table} --spec {input.spec} --out {output} > {log} 2>&1"


rule plot_fig2:
    input:
        **artifact_inputs("fig2"),
    output:
        png=report(f"{PATHS['figures']}/fig2.png", caption="../report/fig2.rst", category="Figures"),
        pdf=f"{PATHS['figures']}/fig2.pdf",
    log:
        log_file("plot_fig2", "fig2"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig2 --spec {input.spec} --out {output.png} > {log} 2>&1"


rule plot_fig3:
    input:
        **artifact_inputs("fig3"),
    output:
        png=report(f"{PATHS['figures']}/fig3.png", caption="../report/fig3.rst", category="Figures"),
        pdf=f"{PATHS['figures']}/fig3.pdf",
    log:
        log_file("plot_fig3", "fig3"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig3 --spec {input.spec} --out {output.png} > {log} 2>&1"


rule plot_fig4:
    input:
        **artifact_inputs("fig4"),
    output:
        png=report(f"{PATHS['figures']}/fig4.png", caption="../report/fig4.rst", category="Figures"),
        pdf=f"{PATHS['figures']}/fig4.pdf",
    log:
        log_file("plot_fig4", "fig4"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig4 --spec {input.spec} --out {output.png} > {log} 2>&1"


rule plot_fig5:
    input:
        **artifact_inputs("fig5"),
    output:
        png=report(f"{PATHS['figures']}/fig5.png", caption="../report/fig5.rst", category="Figures"),
        pdf=f"{PATHS['figures']}/fig5.pdf",
    log:
        log_file("plot_fig5", "fig5"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig5 --spec {input.spec} --out {output.png} > {log} 2>&1"


rule compare_to_paper:
    input:
        **artifact_inputs("compare"),
    output:
        report(f"{PATHS['results']}/compare.md", caption="../report/compare.rst", category="Comparison"),
    log:
        log_file("compare_to_paper", "compare"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact compare --spec {input.spec} --out {output} > {log} 2>&1"
