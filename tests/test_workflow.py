"""The Snakemake workflow: lint, the paper DAG (dry run), resolved run configs.

These run Snakemake in a temporary copy of the workflow files (Snakefile, config.yaml,
workflow/, slurm/), so nothing is written into the checkout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "slurm")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's files (not results, data or runs) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run -> {rule: count}."""
    block = output[output.index("Job stats:") :]
    counts = {}
    for line in block.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


@pytest.fixture(scope="module")
def paper_dry_run(workdir) -> str:
    """The full dry run of config.yaml (every job with its inputs)."""
    proc = snakemake(workdir, "-n")
    return proc.stdout + proc.stderr


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_paper_dag_has_every_run_of_the_paper(paper_dry_run):
    """The dry run of config.yaml: job counts per rule, computed by hand from the paper's grid."""
    counts = job_counts(paper_dry_run)
    seeds, datasets = 3, 4
    # Table 2: 6 ID-trainer rows (SASRec, BERT4Rec, FDSA, RecGURU, ZESRec, and GRU4Rec, an extra row Figure 5
    # needs) on 4 data sets;
    # Figure 3: BERT4Rec on 5 fractions < 1 of Scientific.
    # + KAR (its knowledge file: one kar_knowledge job per data set) + LRURec, LlamaRec's retriever
    idrec = 6 * datasets * seeds + 5 * seeds + datasets * seeds + datasets * seeds
    laser = (
        3 * datasets * seeds  # Table 2: Laser-G/C/L main runs
        + 8 * seeds  # Table 3: ablations on Scientific
        + 8 * seeds  # Table 4: ablations on Pet
        + 3 * seeds  # Table 5: templates
        + 6 * seeds  # Figure 3: transfer from Pet at 6 fractions (0 = zero-shot)
        + (3 + 3 + 3 + 2) * seeds  # Figure 4: K, L, lambda, S grids minus the main point
        + 2 * 2 * seeds  # Figure 5: SASRec / GRU4Rec-fed Laser-C on 2 data sets (BERT4Rec = main)
    )
    text = 3 * datasets * seeds  # FDSA, ZESRec, KAR: an LM encodes their text first (train_small_gpu)
    assert counts["train_small"] + counts["train_small_gpu"] == idrec == 111 and counts["train_small_gpu"] == text
    assert counts["kar_knowledge"] == datasets and "kar_template" not in counts
    recformer = 4 * seeds + 6 * seeds  # Table 2 on 4 data sets; Figure 3: transfer from Pet at 6 fractions
    llamarec = llm4rec = datasets * seeds
    assert counts["train_large"] == laser + recformer + llamarec + llm4rec == 210
    assert counts["write_run_config"] == idrec + laser + recformer + llamarec + llm4rec
    assert counts["download_raw"] == counts["prepare_dataset"] == 4
    assert counts["make_variant_table"] == 3
    for rule in ("make_table1", "make_table2", "plot_fig2", "plot_fig3", "plot_fig4", "plot_fig5", "compare_to_paper"):
        assert counts[rule] == 1, rule
    assert counts["write_artifact_spec"] == 10  # one spec per table, figure and compare.md


def test_embedded_default_dag(workdir):
    proc = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "workflow/default.yaml")
    counts = job_counts(proc.stdout + proc.stderr)
    assert "download_raw" not in counts  # synthetic data is generated, never downloaded
    assert counts["prepare_dataset"] == 2
    # 6 ID-trainer methods (SASRec, BERT4Rec, GRU4Rec, FDSA, RecGURU, ZESRec) x 2 data sets
    # + BERT4Rec at fraction 0 and 0.2 + LRURec (LlamaRec's retriever) x 2 + KAR x 2
    assert counts["train_small"] == 12 and counts["train_small_gpu"] == 6  # FDSA, ZESRec, KAR x 2 data sets
    assert counts["kar_template"] == 2 and "kar_knowledge" not in counts  # template knowledge: no LLM
    # Table 2: 6 Laser + 2 each of RECFORMER, LlamaRec, LLM4REC; Tables 3/4: 8 + 8; Table 5: 3;
    # Fig. 3: 3 Laser + 3 RECFORMER; Fig. 4: 4 axes x 1 off-main point; Fig. 5: 4
    assert counts["train_large"] == 12 + 16 + 3 + 6 + 4 + 4


def test_small_files_are_shell_jobs_that_write_what_the_experiment_resolved(tmp_path):
    """Rules write_run_config and write_artifact_spec run `laser-repro write-config` (a Snakemake run:
    block is spawned as a whole new Snakemake process, ~5 s a job): the JSON passes through the shell
    intact, and the files hold exactly what the experiment model resolves (plus the data's fingerprint)."""
    import json

    import yaml

    from laser_repro.data.dataset import data_fingerprint
    from laser_repro.experiment.plan import Experiment
    from laser_repro.experiment.specs import to_json

    work = copy_workflow(tmp_path / "wf")
    for rules in ("train.smk", "artifacts.smk"):
        assert "\n    run:" not in (work / "workflow" / "rules" / rules).read_text()
    run = "results/default/configs/synthetic/laser-c/tpl-no-phrase/seed~0.yaml"
    snakemake(work, run, "results/default/specs/table3.json", "--cores", "1",
              "--configfile", "workflow/default.yaml", timeout=300)
    exp = Experiment.from_files([work / "config.yaml", work / "workflow" / "default.yaml"])
    written = yaml.safe_load((work / run).read_text())
    expected = exp.resolved_dict("synthetic", "laser-c", "tpl-no-phrase", 0)
    assert written == {**expected, "data_fingerprint": data_fingerprint(work / "results/default/data/synthetic")}
    assert written["template"]["variant"] == "no-phrase" and written["backbone"] == "tiny-llama"
    spec = json.loads((work / "results/default/specs/table3.json").read_text())
    assert spec == {**to_json(exp.spec("table3")), "workflow": exp.config} and spec["variants"][0] == "no-prefix"


def test_write_config_refuses_bad_input_and_writes_nothing(tmp_path, caplog):
    from laser_repro.cli import main

    out = tmp_path / "x.yaml"
    assert main(["write-config", "spec", "--json", "[1, 2]", "--out", str(out)]) == 1
    assert "expected a JSON object, got list" in caplog.text
    assert main(["write-config", "run", "--json", "{\"seed\": 0", "--out", str(out)]) == 1
    assert "--json: not valid JSON" in caplog.text
    assert main(["write-config", "run", "--json", "{}", "--out", str(out)]) == 1
    assert "--data: required for a run config" in caplog.text
    assert main(["write-config", "run", "--json", "{}", "--data", str(tmp_path / "none/stats.json"),
                 "--out", str(out)]) == 1
    assert "none/stats.json not found" in caplog.text
    assert not out.exists()


CONFIG_TARGETS = {
    "main": "results/configs/scientific/laser-c/main/seed~1.yaml",
    "xfer": "results/configs/scientific/laser-c/xfer~pet-frac~0.05/seed~0.yaml",
    "k2": "results/configs/scientific/laser-c/K~2/seed~0.yaml",
    "lambda": "results/configs/scientific/laser-c/lambda~0.001/seed~0.yaml",
    "fed": "results/configs/scientific/laser-c/idrec~gru4rec/seed~0.yaml",
    "ablation": "results/configs/pet/laser-c/no-mformer/seed~2.yaml",
    "frac": "results/configs/scientific/bert4rec/frac~0.2/seed~0.yaml",
}


def test_resolved_configs_share_products_and_follow_the_variants():
    """config.yaml -> the experiment model -> resolved run config (what rule write_run_config writes,
    plus the data set's fingerprint once it is prepared): the keys the trainers read, validated."""
    from laser_repro.experiment.plan import Experiment

    exp = Experiment.from_files([REPO / "config.yaml"])
    cfg = {}
    for name, path in CONFIG_TARGETS.items():
        dataset, method, variant, seed = path.removeprefix("results/configs/").removesuffix(".yaml").split("/")
        assert exp.run_config_file(dataset, method, variant, seed.removeprefix("seed~")) == path
        cfg[name] = exp.resolved_dict(dataset, method, variant, int(seed.removeprefix("seed~")))
    main = cfg["main"]
    assert main["backbone"] == "chatglm2-6b" and main["method"] == "laser-c" and main["seed"] == 1
    assert main["idrec_run"] == "results/runs/scientific/bert4rec/main/seed~1"  # shared ID model
    assert main["dataset"] == "data/processed/scientific"
    assert main["mformer"]["n_experts"] == 8 and main["loss"]["lb_weight"] == 0.01  # dataclass defaults

    xfer = cfg["xfer"]
    assert xfer["init_from"] == "results/runs/pet/laser-c/main/seed~0"
    assert xfer["train_user_fraction"] == 0.05
    assert xfer["idrec_run"] == "results/runs/scientific/bert4rec/frac~0.05/seed~0"

    assert (cfg["k2"]["mformer"]["n_experts"], cfg["k2"]["mformer"]["top_k"]) == (2, 2)
    assert cfg["lambda"]["loss"]["lb_weight"] == 0.001
    assert cfg["fed"]["idrec_run"] == "results/runs/scientific/gru4rec/main/seed~0"
    assert cfg["fed"]["idrec_model"] == "gru4rec"
    assert cfg["ablation"]["bituning"]["prefix"] == "learnable"
    assert cfg["frac"]["model"] == "bert4rec" and cfg["frac"]["train_user_fraction"] == 0.2


def job_block(dry_run: str, rule: str, output: str) -> str:
    """The dry-run entry of the ``rule`` job that writes ``output``."""
    for block in re.split(r"\n(?=\[\w{3} \w{3} )", dry_run):  # each job starts with its [date] line
        if f"rule {rule}:" in block and re.search(rf"output: [^\n]*{re.escape(output)}", block):
            return block
    raise AssertionError(f"no {rule} job writes {output}")


def test_dry_run_wires_laser_to_shared_products(paper_dry_run):
    """A Laser job's inputs: its resolved config, data, the shared ID-model run, the source run."""
    run = "results/runs/scientific/laser-c/xfer~pet-frac~0.1/seed~0"
    block = job_block(paper_dry_run, "train_large", f"{run}/metrics.json")
    inputs = re.search(r"input: ([^\n]*)", block)[1].split(", ")
    assert sorted(inputs) == sorted([
        "results/configs/scientific/laser-c/xfer~pet-frac~0.1/seed~0.yaml",
        "data/processed/scientific/stats.json", "data/processed/scientific/items.json",  # every file of its data
        "data/processed/scientific/users.json", "data/processed/scientific/interactions.npz",
        "results/runs/scientific/bert4rec/frac~0.1/seed~0/metrics.json",
        "results/runs/pet/laser-c/main/seed~0/metrics.json",
    ])
    kar = job_block(paper_dry_run, "kar_knowledge", "results/knowledge/scientific/")  # it reads the data too
    assert "data/processed/scientific/interactions.npz" in re.search(r"input: ([^\n]*)", kar)[1]
    main = job_block(paper_dry_run, "train_large", "results/runs/pet/laser-g/main/seed~2/metrics.json")
    assert "results/runs/pet/bert4rec/main/seed~2/metrics.json" in main
    # one BERT4Rec run per data set and seed serves every Laser run (87 ID jobs in all)
    assert paper_dry_run.count("output: results/runs/pet/bert4rec/main/seed~2/metrics.json") == 1
    # amazon2018 data sets are downloaded, then prepared
    prepare = job_block(paper_dry_run, "prepare_dataset", "data/processed/games/stats.json")
    assert "input: data/raw/games/downloads.json" in prepare


def test_bad_config_is_rejected_before_any_job(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0]\ntable2: {datasets: [scientific], methodz: [sasrec]}\n")
    proc = snakemake(workdir, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "methodz" in proc.stdout + proc.stderr  # schema: unknown key
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("fig5: {idrecs: [sasrec, nope]}\n")
    proc = snakemake(workdir, "-n", "--configfile", str(unknown), check=False)
    assert proc.returncode != 0
    # the error names the config files, not the word "config"
    assert f"config.yaml + {unknown}: fig5.idrecs: names ['nope'], not in ID-model methods" in proc.stdout + proc.stderr
    # a --config value is named as such (config.yaml alone was blamed for it)
    proc = snakemake(workdir, "-n", "--config", "seeds=abc", check=False)
    assert proc.returncode != 0
    assert "config.yaml + --config seeds (command line): seeds: 'abc' is not of type 'array'" in proc.stdout + proc.stderr


def test_files_the_suite_did_not_write_at_its_outputs_stop_the_workflow_before_any_job(tmp_path):
    """Snakemake deletes a job's old outputs before the job runs, so the artifact and data guards inside the jobs
    came too late: a user's notes at results/default/table1.md, or their files in a data folder, were gone."""
    wf = copy_workflow(tmp_path / "wf")
    table = wf / "results/default/table1.md"
    table.parent.mkdir(parents=True)
    table.write_text("my own notes\n")
    notes = wf / "results/default/data/synthetic/my_notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("annotations\n")
    # another tool's results at a run's outputs: train_small would be run (its config is newer), and Snakemake
    # deletes a job's outputs before the trainer's own guard could refuse them
    theirs = wf / "results/default/runs/synthetic/sasrec/main/seed~0/metrics.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('{"test": {"ndcg@10": 0.5}}')
    proc = snakemake(wf, "results/default/table1.md", "--cores", "1", "--configfile", "workflow/default.yaml",
                     check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "refusing to start: these outputs were not written by this suite" in out
    assert "results/default/table1.md: not written by `laser-repro artifact` (no mark)" in out
    assert "results/default/data/synthetic: a folder `laser-repro data prepare` did not write" in out
    assert f"{theirs.relative_to(wf)}: not a metrics.json a laser-repro trainer wrote (no resume hash)" in out
    assert table.read_text() == "my own notes\n" and notes.read_text() == "annotations\n"
    assert theirs.read_text() == '{"test": {"ndcg@10": 0.5}}'


def test_foreign_outputs_name_each_file_and_why(tmp_path):
    from laser_repro.artifacts.output import write_markdown
    from laser_repro.data.dataset import from_sequences, save_dataset
    from test_artifacts_support import paper_experiment

    exp = paper_experiment(tmp_path)
    assert exp.foreign_outputs() == []
    write_markdown(tmp_path / "results" / "table2.md", "| ours |")  # the suite's own: fine
    data = save_dataset(from_sequences("pet", "synthetic", [{"id": "a", "title": "A", "brand": "", "category": ""}],
                                       ["u"], [[0, 0, 0]]), tmp_path / "data" / "pet")
    assert exp.foreign_outputs() == []
    (data / "my_notes.txt").write_text("x")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig3.pdf").write_bytes(b"%PDF-1.4 mine")
    assert exp.foreign_outputs() == [
        f"{tmp_path}/figures/fig3.pdf: not written by `laser-repro artifact` (no mark)",
        f"{data}: holds files `laser-repro data prepare` did not write: ['my_notes.txt']"]
    # a run no artifact reads but the DAG trains (LlamaRec's LRURec retriever): Snakemake would delete it just the same
    retriever = Path(exp.run_inputs("scientific", "llamarec", "main", 0)["lrurec"])
    assert retriever.parts[-3] == "lrurec" and retriever.name == "seed~0"
    (retriever / "metrics.json").parent.mkdir(parents=True)
    (retriever / "metrics.json").write_text('{"test": {}}')
    assert exp.foreign_outputs()[-1] == f"{retriever}/metrics.json: not a metrics.json a laser-repro trainer wrote (no resume hash)"
    assert len(exp.trained_run_dirs()) == len(exp.all_runs()) + 12  # the 321 runs the paper DAG trains


def test_a_changed_raw_file_prepares_its_data_set_again(tmp_path):
    """A data set with `input:` had no inputs: editing its raw files left the old prepared data (and every run
    and table on it) in place."""
    import os

    from laser_repro.data.dataset import MARKER

    wf = copy_workflow(tmp_path / "wf")
    raw = tmp_path / "raw files"  # a space in the path: the prepare command must keep it one argument
    (raw / "sub").mkdir(parents=True)
    (raw / "train.json").write_text("{}")
    (raw / "sub" / "meta.json").write_text("{}")
    (wf / "ov.yaml").write_text(f"datasets: {{mine: {{source: recformer, input: '{raw}'}}}}\n")
    target = ["results/default/data/mine/stats.json", "--configfile", "workflow/default.yaml", "ov.yaml"]
    dry = snakemake(wf, "-n", "-p", *target).stdout
    assert f"input: {raw}/sub/meta.json, {raw}/train.json" in dry and f"--input '{raw}' --name mine" in dry
    for name in (MARKER, "stats.json", "items.json", "users.json", "interactions.npz"):  # prepared after the edit
        out = wf / "results/default/data/mine" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")
        os.utime(out, (2e9, 2e9))
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(wf, "-n", *target))
    os.utime(raw / "train.json", (2.1e9, 2.1e9))  # the raw file changes later
    assert "reason: Updated input files: " + str(raw / "train.json") in snakemake(wf, "-n", *target).stdout


def test_a_data_file_edited_by_hand_reruns_the_jobs_that_read_it(tmp_path):
    """Only stats.json was an input of the run configs: an edited interactions.npz reran nothing (the trainer, the
    knowledge generator and Table 1 now refuse such a folder; Snakemake has to run them for that)."""
    import os

    from laser_repro.data.dataset import MARKER

    wf = copy_workflow(tmp_path / "wf")
    config = "results/default/configs/synthetic/sasrec/main/seed~0.yaml"
    target = [config, "--configfile", "workflow/default.yaml"]
    for name in (MARKER, "stats.json", "items.json", "users.json", "interactions.npz", f"../../../../{config}"):
        out = wf / "results/default/data/synthetic" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")
        os.utime(out, (2e9, 2e9))
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(wf, "-n", *target))
    os.utime(wf / "results/default/data/synthetic/interactions.npz", (2.1e9, 2.1e9))
    dry = snakemake(wf, "-n", *target).stdout
    assert "rule write_run_config" in dry and "reason: Updated input files: results/default/data/synthetic/interactions.npz" in dry


def test_measurements_doc_has_the_dags_job_counts(paper_dry_run):
    """docs/measurements.md is written by scripts/measure_docs.py from this dry run: rerun it when the DAG changes."""
    doc = (REPO / "docs" / "measurements.md").read_text()
    table = doc[doc.index("## The paper DAG"):doc.index("## Training runs")]
    written = {m[1]: int(m[2]) for m in re.finditer(r"^\| (\w+) \| (\d+) \|$", table, re.M)}
    counts = job_counts(paper_dry_run)
    assert written == {k: v for k, v in counts.items() if k != "total"}, "run: python scripts/measure_docs.py"


def test_slurm_profile_sizes_each_training_rule_and_grows_memory_on_retries(workdir):
    """`--profile slurm`: ID models train on the CPU partition without a GPU, models that run a language model
    (train_small_gpu: KAR, FDSA, ZESRec; train_large) on the GPU partition with one, KAR's template knowledge on a
    CPU; a resubmitted job (`attempt` 2, 3) asks for more memory, as Snakemake evaluates the profile."""
    import yaml
    from snakemake.resources import Resource

    targets = [f"results/default/runs/synthetic/{m}/main/seed~0/metrics.json" for m in ("sasrec", "kar", "laser-c")]
    proc = snakemake(workdir, "-n", *targets, "--profile", "slurm", "--configfile", "workflow/default.yaml")
    res = {}
    for rule, line in re.findall(r"^rule (\w+):\n(?:    (?!resources:).*\n)*    resources: (.*)$",
                                 proc.stdout + proc.stderr, re.M):
        res[rule] = dict(kv.split("=", 1) for kv in line.split(", "))
    assert {"train_small", "train_small_gpu", "train_large", "kar_template", "prepare_dataset"} <= set(res), res
    for rule in ("train_small", "kar_template", "prepare_dataset"):
        assert res[rule]["slurm_partition"] == "cpu" and "gres" not in res[rule], (rule, res[rule])
    for rule in ("train_small_gpu", "train_large"):
        assert res[rule]["slurm_partition"] == "gpu" and res[rule]["gres"] == "gpu:1", (rule, res[rule])
    profile = yaml.safe_load((workdir / "slurm" / "config.yaml").read_text())["set-resources"]
    for rule in ("train_small", "train_small_gpu", "train_large", "kar_knowledge", "prepare_dataset"):
        mem = [Resource.cli_evaluator("mem_mb", str(profile[rule]["mem_mb"]), wildcards=None, input=None,
                                       attempt=attempt, async_run=None) for attempt in (1, 2, 3)]
        assert str(mem[0]) == res.get(rule, {"mem_mb": str(mem[0])})["mem_mb"] and mem[0] < mem[1] <= mem[2], (rule, mem)
