# Data: raw files (download, or a user's own folder) -> the processed format (data prepare).


rule download_raw:
    output:
        record=f"{PATHS['raw']}/{{dataset}}/downloads.json",
    params:
        category=download_category,
        out=subpath(output.record, parent=True),
    log:
        log_file("download_raw", "{dataset}"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro data download --category {params.category:q} --out {params.out:q} > {log} 2>&1"


rule prepare_dataset:
    input:
        unpack(prepare_inputs),
    output:
        stats=f"{PATHS['data']}/{{dataset}}/stats.json",
        item_table=f"{PATHS['data']}/{{dataset}}/items.json",
        user_table=f"{PATHS['data']}/{{dataset}}/users.json",
        interactions=f"{PATHS['data']}/{{dataset}}/interactions.npz",
    params:
        args=prepare_args,
        out=subpath(output.stats, parent=True),
    log:
        log_file("prepare_dataset", "{dataset}"),
    conda:
        "../envs/laser-repro.yaml"
    shell:
        "laser-repro data prepare {params.args} --name {wildcards.dataset:q} --out {params.out:q} > {log} 2>&1"
