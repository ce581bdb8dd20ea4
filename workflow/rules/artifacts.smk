# Artifacts: one rule per table / figure, reading run folders only (never training).


rule make_table1:
    input:
        stats=[data_stats(d) for d in config["table1"]["datasets"]],
    output:
        report(result_file("table1.md"), caption="../report/table1.rst", category="Tables"),
    params:
        data=data_root,
        datasets=" ".join(config["table1"]["datasets"]),
    log:
        log_file("make_table1", "table1"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact table1 --data-dir {params.data} --datasets {params.datasets} --out {output} > {log} 2>&1"


rule make_table2:
    input:
        metrics=metrics_of(runs_table2()),
    output:
        report(result_file("table2.md"), caption="../report/table2.rst", category="Tables"),
    params:
        runs=runs_root,
        datasets=" ".join(config["table2"]["datasets"]),
        seeds=seeds_arg(),
    log:
        log_file("make_table2", "table2"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact table2 --runs-root {params.runs} --datasets {params.datasets} "
        "--seeds {params.seeds} --out {output} > {log} 2>&1"


rule make_variant_table:
    input:
        metrics=variant_table_metrics,
    output:
        report(result_file("{table}.md"), caption="../report/variant_table.rst", category="Tables"),
    params:
        runs=runs_root,
        dataset=variant_table_dataset,
        seeds=seeds_arg(),
    log:
        log_file("make_variant_table", "{table}"),
    wildcard_constraints:
        table="table3|table4|table5",
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact {wildcards.table} --runs-root {params.runs} --dataset {params.dataset} "
        "--seeds {params.seeds} --out {output} > {log} 2>&1"


rule plot_fig2:
    input:
        metrics=metrics_of(runs_fig2()),
        stats=[data_stats(d) for d in config["fig2"]["datasets"]],
    output:
        png=report(figure_file("fig2.png"), caption="../report/fig2.rst", category="Figures"),
        pdf=figure_file("fig2.pdf"),
    params:
        runs=runs_root,
        data=data_root,
        datasets=" ".join(config["fig2"]["datasets"]),
        seeds=seeds_arg(),
    log:
        log_file("plot_fig2", "fig2"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig2 --runs-root {params.runs} --data-dir {params.data} "
        "--datasets {params.datasets} --seeds {params.seeds} --out {output.png} > {log} 2>&1"


rule plot_fig3:
    input:
        metrics=metrics_of(runs_fig3()),
    output:
        png=report(figure_file("fig3.png"), caption="../report/fig3.rst", category="Figures"),
        pdf=figure_file("fig3.pdf"),
    params:
        runs=runs_root,
        dataset=config["fig3"]["dataset"],
        source=config["fig3"]["source"],
        fractions=fig3_fractions_arg(),
        seeds=seeds_arg(),
    log:
        log_file("plot_fig3", "fig3"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig3 --runs-root {params.runs} --dataset {params.dataset} --source {params.source} "
        "--fractions {params.fractions} --seeds {params.seeds} --out {output.png} > {log} 2>&1"


rule plot_fig4:
    input:
        metrics=metrics_of(runs_fig4()),
    output:
        png=report(figure_file("fig4.png"), caption="../report/fig4.rst", category="Figures"),
        pdf=figure_file("fig4.pdf"),
    params:
        runs=runs_root,
        dataset=config["fig4"]["dataset"],
        grid=fig4_args(),
        seeds=seeds_arg(),
    log:
        log_file("plot_fig4", "fig4"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig4 --runs-root {params.runs} --dataset {params.dataset} {params.grid} "
        "--seeds {params.seeds} --out {output.png} > {log} 2>&1"


rule plot_fig5:
    input:
        metrics=metrics_of(runs_fig5()),
    output:
        png=report(figure_file("fig5.png"), caption="../report/fig5.rst", category="Figures"),
        pdf=figure_file("fig5.pdf"),
    params:
        runs=runs_root,
        datasets=" ".join(config["fig5"]["datasets"]),
        idrecs=" ".join(config["fig5"]["idrecs"]),
        default_idrec=COLLABORATIVE,
        seeds=seeds_arg(),
    log:
        log_file("plot_fig5", "fig5"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact fig5 --runs-root {params.runs} --datasets {params.datasets} "
        "--idrecs {params.idrecs} --default-idrec {params.default_idrec} --seeds {params.seeds} --out {output.png} > {log} 2>&1"


rule compare_to_paper:
    input:
        metrics=metrics_of(all_runs()),
        stats=[data_stats(d) for d in config["table1"]["datasets"]],
    output:
        report(result_file("compare.md"), caption="../report/compare.rst", category="Comparison"),
    params:
        args=compare_args(),
    log:
        log_file("compare_to_paper", "compare"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro artifact compare {params.args} --out {output} > {log} 2>&1"
