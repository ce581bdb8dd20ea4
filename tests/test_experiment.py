"""The experiment model: the registry, the variant grammar, the config schema, and the config
driving every artifact (change a key, and the artifact reads the other runs)."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from laser_repro.artifacts.ablation import compute_ablation
from laser_repro.artifacts.fig2 import compute_fig2
from laser_repro.artifacts.fig3 import compute_fig3
from laser_repro.artifacts.fig4 import compute_fig4
from laser_repro.artifacts.fig5 import compute_fig5
from laser_repro.artifacts.table2 import compute_table2
from laser_repro.cli import main as cli_main
from laser_repro.train.inputs import declared_inputs
from laser_repro.config import from_dict, to_dict
from laser_repro.experiment import layout, registry
from laser_repro.experiment.config import WorkflowConfigError, nest, validate
from laser_repro.experiment.specs import load_spec, to_json
from test_artifacts_support import REPO, paper_experiment, write_run


# ---------------------------------------------------------------- registry


def test_every_method_is_declared_once_with_a_working_trainer():
    for m in registry.METHODS.values():
        cls = m.trainer.config_cls()
        cfg = from_dict(cls, nest(m.base_config()))  # the method's identity (dotted keys) is valid for its trainer
        assert getattr(cfg, m.trainer.method_key) == m.name
        assert m.trainer.compute in ("small", "large") and m.compute in registry.COMPUTE
        assert m.group is None or m.group in registry.GROUPS
    by_compute = {c: sorted(n for n, m in registry.METHODS.items() if m.compute == c) for c in registry.COMPUTE}
    assert by_compute["small"] == ["bert4rec", "gru4rec", "lrurec", "recguru", "sasrec"]  # ID only: no GPU asked
    assert by_compute["small_gpu"] == ["fdsa", "kar", "zesrec"]  # an LM encodes their text first
    assert [m for m in registry.METHODS.values() if m.ours] == [registry.METHODS[n] for n in ("laser-g", "laser-c", "laser-l")]
    assert registry.stand_in("laser-c", "chatglm2-6b") is None and registry.stand_in("laser-c", "minilm") == "minilm"
    assert registry.stand_in("sasrec", None) is None
    with pytest.raises(ValueError, match="'nope' is not a registered method"):
        registry.get_method("nope")


def test_methods_command_lists_every_method(capsys):
    assert cli_main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == list(registry.METHODS)
    laser = next(r for r in rows if r["method"] == "laser-c")
    assert laser["command"] == "laser-repro train-laser" and "ID-model run" in laser["needs"]
    assert "chatglm2-6b" in laser["needs"]


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize("name, kind, field, value", [
    (layout.frac_variant(0.05), "frac", "fraction", 0.05),
    (layout.xfer_variant("pet", 0), "xfer", "source", "pet"),
    (layout.xfer_variant("pet", 0.2), "xfer", "fraction", 0.2),
    (layout.idrec_variant("sasrec", "bert4rec"), "idrec", "idrec", "sasrec"),
    (layout.grid_variant("lambda", 0.001, 0.01), "grid", "value", 0.001),
    ("no-prefix", "named", "name", "no-prefix"),
])
def test_variant_names_are_built_and_parsed_in_one_place(name, kind, field, value):
    v = layout.parse_variant(name, named=["no-prefix"], axes=["lambda"])
    assert v.kind == kind and getattr(v, field) == value


def test_variant_builders_fold_the_main_point_and_reject_unknown_names():
    assert layout.frac_variant(1) == layout.idrec_variant("bert4rec", "bert4rec") == layout.MAIN
    assert layout.grid_variant("K", 8.0, 8) == layout.MAIN and layout.grid_variant("K", 4, 8) == "K~4"
    assert layout.xfer_variant("pet", 0.05) == "xfer~pet-frac~0.05"
    with pytest.raises(ValueError, match="variant 'K~x' is unknown"):
        layout.parse_variant("K~x", axes=["K"])


def test_variant_names_keep_every_value_exactly():
    """Six decimals named 2.5e-6 and 3.4e-6 both lambda~0.000003, so a changed grid value reused the old run."""
    names = {v: layout.grid_variant("lambda", v, 0.01) for v in (2.5e-6, 3.4e-6, 1e-4, 0.05, 0.123456789, 1e-7)}
    assert names[2.5e-6] == "lambda~2.5e-06" and names[3.4e-6] == "lambda~3.4e-06"
    assert names[1e-4] == "lambda~0.0001" and names[0.05] == "lambda~0.05"  # names of existing runs unchanged
    assert names[0.123456789] == "lambda~0.123456789" and names[1e-7] == "lambda~1e-07"
    for value, name in names.items():
        assert layout.parse_variant(name, axes=["lambda"]).value == value
    assert layout.xfer_variant("pet", 1 / 3) == f"xfer~pet-frac~{1 / 3!r}"
    assert layout.parse_variant(layout.xfer_variant("pet", 1 / 3)).fraction == 1 / 3


def test_run_inputs_include_every_file_the_config_names(tmp_path):
    """RecFormer's init_checkpoint was not an input: replacing the checkpoint did not rerun the runs built on it."""
    exp = paper_experiment(tmp_path, method_run={"recformer": {"init_checkpoint": "/ckpt/recformer.bin"}})
    assert exp.file_inputs("scientific", "recformer", "main", 0)["init_checkpoint"] == "/ckpt/recformer.bin"
    assert "init_checkpoint" not in paper_experiment(tmp_path).file_inputs("scientific", "recformer", "main", 0)
    kar = exp.file_inputs("scientific", "kar", "main", 0)  # the list the trainer checks and fingerprints
    resolved = exp.resolved("scientific", "kar", "main", 0)
    assert kar == {"knowledge_file": resolved.knowledge_file}
    assert [(k, str(p)) for k, p, _ in declared_inputs(resolved)] == [("knowledge_file", resolved.knowledge_file)]



def test_a_run_never_waits_for_an_input_run_it_does_not_read(tmp_path):
    """w/o M-Former and w/o prefix name the BERT4Rec run but never read it: it was a rule input, so each BERT4Rec
    rerun requeued them (GPU jobs of days) and they could not start before it finished."""
    exp = paper_experiment(tmp_path)
    bert4rec = exp.run_dir("scientific", "bert4rec", "main", 0)
    assert exp.run_inputs("scientific", "laser-c", "main", 0) == {"idrec": bert4rec}
    for variant in ("no-mformer", "no-prefix"):
        assert exp.resolved("scientific", "laser-c", variant, 0).idrec_run == bert4rec  # named ...
        assert exp.run_inputs("scientific", "laser-c", variant, 0) == {}  # ... not read, not waited for
    assert exp.run_inputs("scientific", "laser-c", "no-suffix-mean", 0) == {"idrec": bert4rec}



def test_a_local_knowledge_generator_names_a_file_inside_its_data_sets_folder(tmp_path):
    """``knowledge_generator: local:PATH`` became the file name: PATH's slashes made folders and enough ``..`` put the
    knowledge file (which Snakemake deletes before the job) outside results/."""
    from laser_repro.experiment.config import WorkflowConfigError as Refused

    exp = paper_experiment(tmp_path, method_run={"kar": {"knowledge_generator": "local:../../../../etc/llm"}})
    path = Path(exp.resolved("scientific", "kar", "main", 0).knowledge_file)
    assert path.parent == Path(exp.paths["results"]) / "knowledge" / "scientific"
    assert re.fullmatch(r"local~[0-9a-f]{16}\.json", path.name)
    assert exp.knowledge_generator(path.stem) == "local:../../../../etc/llm"  # the rule's --generator
    assert exp.knowledge_generator("chatglm2-6b") == "chatglm2-6b"  # KAR's default keeps its name
    other = paper_experiment(tmp_path, method_run={"kar": {"knowledge_generator": "local:/models/b"}})
    assert Path(other.resolved("scientific", "kar", "main", 0).knowledge_file).name != path.name
    with pytest.raises(Refused, match="no configured knowledge generator is named 'local~0000'"):
        exp.knowledge_generator("local~0000")
    exp.config["fig4"]["grid"]["gen"] = {"key": "knowledge_generator", "values": ["local:/m/a", "template"]}
    assert exp.knowledge_generator(layout.knowledge_name("local:/m/a")) == "local:/m/a"  # a grid's values too
    # the LLM generators' files go to rule kar_knowledge (a GPU on SLURM), the template's to kar_template (a CPU)
    assert exp.knowledge_names(llm=True) == sorted(["chatglm2-6b", path.stem, layout.knowledge_name("local:/m/a")])
    assert exp.knowledge_names(llm=False) == ["template"]


def test_the_real_data_overlay_keeps_its_own_folders():
    """workflow/real-data.yaml shared config.yaml's folders: switching between them re-prepared
    data/processed/scientific from the other source, which made every Scientific run stale (lost)."""
    from laser_repro.experiment.plan import Experiment

    plain = Experiment.from_files([REPO / "config.yaml"])
    real = Experiment.from_files([REPO / "config.yaml", REPO / "workflow" / "real-data.yaml"])
    assert real.config["datasets"]["scientific"]["source"] == "recformer"
    assert set(real.config["paths"]) == set(plain.config["paths"])
    for key, path in real.config["paths"].items():  # the raw downloads (identical files) stay shared
        assert Path(path).parts[:2] == ("results", "real") if key != "raw" else path == plain.config["paths"]["raw"]
    assert real.data_dir("scientific") != plain.data_dir("scientific")
    assert real.run_dir("scientific", "bert4rec", "main", 0) != plain.run_dir("scientific", "bert4rec", "main", 0)


# ---------------------------------------------------------------- config


def test_schema_rejects_unknown_keys_and_fills_defaults():
    with pytest.raises(WorkflowConfigError, match=r"table2: Additional properties are not allowed \('methodz'"):
        validate({"table2": {"methodz": ["sasrec"]}})
    cfg = validate({"seeds": ["0", "2"], "fig3": {"fractions": ["0.5"]}})  # strings from `--config k=v`
    assert cfg["seeds"] == [0, 2] and cfg["fig3"]["fractions"] == [0.5]
    assert cfg["table2"]["methods"] == "all" and cfg["fig2"]["cold_fraction"] == 0.35
    assert cfg["paths"]["runs"] == "results/runs"


@pytest.mark.parametrize("overrides, message", [
    # one run counted as two seeds: mean ± 0.00 and a zero-width interval in compare.md
    ({"seeds": [0, 0]}, r"seeds: \[0, 0\] has non-unique elements"),
    ({"table2": {"datasets": ["pet", "pet"]}}, r"table2\.datasets: \['pet', 'pet'\] has non-unique"),
    ({"fig3": {"fractions": [0.5, 0.5]}}, r"fig3\.fractions: \[0\.5, 0\.5\] has non-unique"),
    # a baseline cell replaced the transferred one: its xfer~ runs vanished and the series were mislabelled
    ({"fig3": {"methods": ["laser-c"], "baselines": ["bert4rec", "laser-c"]}},
     r"fig3\.baselines: \['laser-c'\] also in fig3\.methods"),
])
def test_a_name_or_seed_listed_twice_is_refused_by_key(tmp_path, overrides, message):
    with pytest.raises(WorkflowConfigError, match=message):
        paper_experiment(tmp_path, **overrides)


@pytest.mark.parametrize("overrides, message", [
    # each was accepted and failed later, inside a job (or in a Snakemake params function)
    ({"datasets": {"mine": {"source": "recformer"}}}, r"datasets\.mine: source recformer reads a folder of files: set "
                                                      r"`input`"),
    ({"datasets": {"mine": {"source": "amazon2018"}}}, r"datasets\.mine: source amazon2018 without `input` is "
                                                       r"downloaded: set `category`"),
    ({"datasets": {"mine": {"source": "amazon2018", "category": "Industrial_and_Scientfic"}}},
     r"datasets\.mine\.category: unknown category 'Industrial_and_Scientfic'"),
    ({"datasets": {"a b": {"source": "synthetic"}}}, r"datasets: 'a b' does not match"),  # a job's --name
    ({"datasets": {"..": {"source": "synthetic"}}}, r"datasets: '\.\.' does not match"),  # out of the data folder
    ({"fig3": {"source": "scientific", "dataset": "scientific"}}, r"fig3\.source: 'scientific' is also fig3\.dataset"),
    ({"table3": {"variants": []}}, r"table3\.variants: \[\] should be non-empty"),
    # the most specific reason of a key that takes either form, not "is not valid under any of the given schemas"
    ({"table2": {"methods": "All"}}, r"table2\.methods: 'All' is not one of \['all'\]"),
])
def test_a_data_set_or_section_a_job_could_not_use_is_refused_by_key(tmp_path, overrides, message):
    with pytest.raises(WorkflowConfigError, match=message):
        paper_experiment(tmp_path, **overrides)


def test_an_overlay_may_switch_a_data_sets_source_and_its_inherited_keys_go_unread(tmp_path):
    """An overlay merges key by key and cannot remove one: switching `scientific` to a synthetic set keeps the base
    file's `category`, which the synthetic source does not read (and its raw files go to its own raw folder)."""
    exp = paper_experiment(tmp_path, datasets={"scientific": {"source": "synthetic", "users": 60}})
    assert exp.datasets["scientific"] == {"source": "synthetic", "category": "Industrial_and_Scientific", "seed": 0,
                                          "users": 60}


@pytest.mark.parametrize("method, key, value, names", [
    ("laser-c", "backbone", "llama9", "'gpt2-large', 'chatglm2-6b', 'llama2-7b', 'tiny-gpt2'"),
    ("llm4rec", "backbone", "gpt2-larg", "'gpt2-large'"),
    ("llamarec", "backbone", "llama2-7", "'llama2-7b', 'tiny-llama', 'smollm2'"),
    ("kar", "knowledge_generator", "templat", "'template', 'gpt2-large'"),
    ("laser-c", "backbone", "local:", "local:PATH"),
])
def test_a_model_name_no_loader_knows_is_refused_when_the_run_is_resolved(tmp_path, method, key, value, names):
    """A misspelled backbone or generator was accepted and failed inside the training job (on a cluster: after
    its upstream runs, the queue and every retry); it now fails with the config, naming the run and the key."""
    with pytest.raises(WorkflowConfigError, match=rf"run \w+/{method}/main/seed~\d: {key}: unknown name "
                                                  rf"'{value}'; expected one of \[.*{re.escape(names)}"):
        paper_experiment(tmp_path, method_run={method: {key: value}})


def test_run_configs_resolve_in_order_and_reject_what_the_workflow_sets(tmp_path):
    exp = paper_experiment(tmp_path, run={"laser": {"optim.lr": 0.5}}, method_run={"laser-c": {"optim": {"lr": 0.25}}})
    cfg = exp.resolved("scientific", "laser-c", "one-expert", 1)
    assert cfg.optim.lr == 0.25 and cfg.mformer.n_experts == 1 and cfg.backbone == "chatglm2-6b"
    assert cfg.idrec_run == f"{tmp_path}/runs/scientific/bert4rec/main/seed~1"
    assert exp.resolved("scientific", "laser-g", "main", 0).optim.lr == 0.5
    with pytest.raises(WorkflowConfigError, match=r"method_run\.laser-c: \['method'\] are set by the workflow"):
        paper_experiment(tmp_path, method_run={"laser-c": {"method": "x"}})
    with pytest.raises(WorkflowConfigError, match=r"run scientific/sasrec/main/seed~0: .*unknown key\(s\) \['hidden'\]"):
        paper_experiment(tmp_path, run={"idrec": {"hidden": 3}})
    with pytest.raises(WorkflowConfigError, match=r"run: names \['nope'\], not in trainers"):
        paper_experiment(tmp_path, run={"nope": {}})


@pytest.mark.parametrize("overrides, message", [
    # a variant named like a Figure 4 point replaced that point's run: "K~2" trained with K = 4
    ({"variants": {"K~2": {"loss.lb_weight": 0.5}}}, r"variants\.K~2: a named variant may use"),
    ({"variants": {"idrec~sasrec": {}}}, r"variants\.idrec~sasrec: a named variant"),
    ({"variants": {"main": {"loss.lb_weight": 0.5}}}, r"variants\.main: a named variant .* must not be 'main'"),
    # an axis named like a built-in run kind: "frac~0.5" trained on half the users
    ({"fig4": {"grid": {"frac": {"key": "loss.lb_weight", "values": [0.5]}}}}, r"fig4\.grid\.frac: an axis name"),
    ({"fig4": {"grid": {"no-lb": {"key": "loss.lb_weight", "values": [0.5]}}}}, r"fig4\.grid\.no-lb: an axis name"),
    # an `at` override keyed unlike the run names was ignored: "2.0" is not how K = 2's run name writes it
    ({"fig4": {"grid": {"K": {"key": "mformer.n_experts", "values": [2, 4], "at": {"2.0": {"mformer.top_k": 2}}}}}},
     r"fig4\.grid\.K\.at\.2\.0: not a value as run names write it; expected '2'"),
    ({"fig4": {"grid": {"K": {"key": "mformer.n_experts", "values": [2, 4], "at": {"two": {"mformer.top_k": 2}}}}}},
     r"fig4\.grid\.K\.at\.two: not a value as run names write it; expected a number"),
])
def test_variant_and_axis_names_never_shadow_the_workflows_run_names(tmp_path, overrides, message):
    with pytest.raises(WorkflowConfigError, match=message):
        paper_experiment(tmp_path, **overrides)


def test_a_variant_never_moves_a_run_to_another_data_set_seed_or_method(tmp_path):
    """Blocked under run: and method_run:, these keys were accepted from a variant or a Figure 4 axis: the run in
    seed~0 trained with seed 7, or on another data set, under its cell's name."""
    for key, value in (("seed", 7), ("dataset", "/tmp/other"), ("method", "laser-g")):
        exp = paper_experiment(tmp_path, variants={"x": {key: value}})
        with pytest.raises(WorkflowConfigError, match=rf"variants\.x: \['{key}'\] are set by the workflow"):
            exp.resolved("scientific", "laser-c", "x", 0)
    with pytest.raises(WorkflowConfigError, match=r"fig4\.grid\.K\.key: \['seed'\] are set by the workflow"):
        paper_experiment(tmp_path, fig4={"grid": {"K": {"key": "seed", "values": [1, 2]}}})  # its runs: all checked


def test_a_key_given_twice_in_a_yaml_file_is_refused_with_its_line(tmp_path):
    """YAML keeps the last of two equal keys silently: `optim: {lr: 0.1}` then `optim: {batch_size: 4}` lost lr."""
    from laser_repro.config import ConfigError, load_config
    from laser_repro.laser.config import LaserRunConfig

    path = tmp_path / "run.yaml"
    path.write_text("dataset: /tmp/x\noptim: {lr: 0.1}\nseed: 1\noptim: {batch_size: 4}\n")
    with pytest.raises((ValueError, ConfigError), match=r"run\.yaml:4: key 'optim' is given twice"):
        load_config(LaserRunConfig, path)
    path.write_text("dataset: /tmp/x\noptim: {lr: .inf}\n")  # an infinite number passed every range check
    with pytest.raises((ValueError, ConfigError), match=r"optim\.lr: inf is out of range"):
        load_config(LaserRunConfig, path)


# ---------------------------------------------------------------- the config drives the artifacts

COMPUTE = {"table2": compute_table2, "table3": compute_ablation, "table4": compute_ablation,
           "table5": compute_ablation, "fig2": compute_fig2, "fig3": compute_fig3, "fig4": compute_fig4,
           "fig5": compute_fig5}
CASES = [  # (artifact, config overrides, the method its runs must now use)
    ("table2", {"table2": {"methods": ["sasrec", "laser-l"]}}, "laser-l"),
    ("table3", {"table3": {"method": "laser-g"}}, "laser-g"),
    ("table4", {"table4": {"method": "laser-l"}}, "laser-l"),
    ("table5", {"table5": {"method": "laser-g"}}, "laser-g"),
    ("fig2", {"fig2": {"methods": ["laser-l", "sasrec"]}}, "laser-l"),
    ("fig3", {"fig3": {"methods": ["laser-g"]}}, "laser-g"),
    ("fig3", {"fig3": {"baselines": ["sasrec"]}}, "sasrec"),
    ("fig4", {"fig4": {"method": "laser-l"}}, "laser-l"),
    ("fig5", {"fig5": {"method": "laser-g"}}, "laser-g"),
]


@pytest.mark.parametrize("artifact, overrides, method", CASES, ids=[f"{a}-{list(o[a])[0]}" for a, o, _ in CASES])
def test_each_artifact_key_changes_the_runs_the_artifact_reads(tmp_path, artifact, overrides, method):
    base = {"seeds": [0], "table2": {"datasets": ["pet"]}, "fig2": {"datasets": ["pet"]}}
    default = paper_experiment(tmp_path, **base)
    changed = paper_experiment(tmp_path, **{**base, **{k: {**base.get(k, {}), **v} for k, v in overrides.items()}})
    runs = changed.runs_of(artifact)
    assert set(runs) != set(default.runs_of(artifact))
    assert any(r.method == method for r in runs)
    for r in runs:  # exactly the changed spec's runs exist
        write_run(tmp_path / "runs", r.dataset, r.method, r.variant, r.seed, np.arange(30) % 15)
    spec = changed.spec(artifact)
    data = COMPUTE[artifact](spec)
    # (Figure 2 cannot use runs of a data set that is not prepared here: each is a gap saying so, never dropped)
    assert [g for g in data.missing() if g.kind != "unusable"] == [], data.missing()
    assert all("is not prepared" in g.stale for g in data.missing()) and bool(data.missing()) == (artifact == "fig2")
    read = {(g.dataset, g.method, g.variant) for g in data.groups.values()}
    assert any(m == method for _, m, _ in read)
    assert read == {(r.dataset, r.method, r.variant) for r in runs}
    # the untouched config now misses the runs it would read: the artifact lists them, never drops them
    assert COMPUTE[artifact](default.spec(artifact)).missing()
    # the spec file the workflow writes round-trips
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(to_json(spec)))
    assert load_spec(artifact, path) == spec


def test_cold_fraction_and_tolerance_reach_their_artifacts(tmp_path):
    exp = paper_experiment(tmp_path, fig2={"cold_fraction": 0.5}, compare={"tolerance": 5})
    assert exp.spec("fig2").cold_fraction == 0.5 and exp.spec("compare").tolerance == 5.0
    assert exp.spec("compare").fig2.cold_fraction == 0.5


def test_fig4_points_equal_to_the_main_config_read_the_main_run(tmp_path):
    exp = paper_experiment(tmp_path, method_run={"laser-c": {"loss.lb_weight": 0.1}})
    axes = {a.name: a for a in exp.spec("fig4").axes}
    assert axes["lambda"].main == 0.1 and axes["K"].main == 8
    variants = {r.variant for r in exp.runs_of("fig4")}
    assert "lambda~0.1" not in variants and "lambda~0.01" in variants and "main" in variants
    # K=2 needs top-k <= K: the config's `at` override sets it, and the resolved run has it
    assert exp.resolved("scientific", "laser-c", "K~2", 0).mformer.top_k == 2
    # a YAML key written as a number (`at: {2: ...}`) names the same point
    exp = paper_experiment(tmp_path, fig4={"grid": {"K": {"key": "mformer.n_experts", "values": [2, 4],
                                                          "at": {2: {"mformer.top_k": 2}}}}})
    assert exp.resolved("scientific", "laser-c", "K~2", 0).mformer.top_k == 2
    # an `at` on the main value: that point reads the main run, so overrides it lacks were ignored (K = 8 with
    # top-k 2 plotted the main run's top-k 3); the same values as the main run are harmless
    grid = {"K": {"key": "mformer.n_experts", "values": [4, 8], "at": {"8": {"mformer.top_k": 2}}}}
    with pytest.raises(WorkflowConfigError, match=r"fig4\.grid\.K\.at\.8: mformer\.n_experts = 8 is the main run's "
                                                  r"value, so this point reads the main run, which does not have "
                                                  r"\{'mformer\.top_k': 2\}"):
        paper_experiment(tmp_path, fig4={"grid": grid})
    grid["K"]["at"] = {"8": {"mformer.top_k": 3}}
    assert paper_experiment(tmp_path, fig4={"grid": grid}).spec("fig4").cells()[("K", 8)].variant == "main"


def test_paper_config_counts(tmp_path):
    exp = paper_experiment(tmp_path)
    kinds = [registry.METHODS[r.method].trainer.name for r in exp.all_runs()]
    # idrec: 7 Table 2 ID-trainer rows (KAR included) x 4 data sets x 3 seeds = 84, Figure 3's 15 BERT4Rec runs, and the
    # LRURec retriever each LlamaRec run reads (12, found through the run's inputs)
    kinds += ["idrec" for r in exp.all_runs() if r.method == "llamarec"]  # one LRURec run per LlamaRec run
    assert (kinds.count("idrec"), kinds.count("laser"), kinds.count("recformer"), kinds.count("llamarec"),
            kinds.count("llm4rec")) == (84 + 15 + 12, 156, 4 * 3 + 6 * 3, 4 * 3, 4 * 3)
    kar = exp.resolved("arts", "kar", "main", 1)
    assert kar.knowledge_generator == "chatglm2-6b" and kar.text_encoder == "chatglm2-6b"
    assert kar.knowledge_file == exp.knowledge_file("arts", "chatglm2-6b")
    assert exp.file_inputs("arts", "kar", "main", 1) == {"knowledge_file": kar.knowledge_file}
    llama = exp.resolved("pet", "llamarec", "main", 2)
    assert llama.retriever_run == exp.run_dir("pet", "lrurec", "main", 2) and llama.backbone == "llama2-7b"
    assert exp.run_inputs("pet", "llamarec", "main", 2) == {"lrurec": exp.run_dir("pet", "lrurec", "main", 2)}
    assert exp.resolved("scientific", "zesrec", "main", 0).text_encoder == "bert-base-uncased"
    # FDSA's paper cells (RecFormer's, from UniSRec's FDSA) read BERT [CLS] features: MiniLM is a stand-in (†)
    fdsa = exp.resolved("scientific", "fdsa", "main", 0)
    assert fdsa.text_encoder == "bert-base-uncased" and fdsa.model_config == {"text_dim": 768}  # BERT-base's width
    assert registry.stand_in("fdsa", "minilm") == "minilm" and registry.stand_in("fdsa", "bert-base-uncased") is None
    guru = exp.resolved("scientific", "recguru", "main", 0)
    assert (guru.lr, guru.batch_size) == (0.01, 1024)  # RecGURU's own settings (registry run_defaults)
    assert (REPO / "workflow" / "rules" / "common.smk").read_text().count("\n") <= 160


def test_data_sets_a_run_pretrains_on_are_its_inputs(tmp_path):
    """ZESRec's pretrain_datasets (and RECFORMER's pretrain.datasets) become rule inputs: prepared first."""
    pet = f"{tmp_path}/data/pet"
    exp = paper_experiment(tmp_path, method_run={"zesrec": {"pretrain_datasets": [pet], "pretrain_epochs": 2},
                                                 "recformer": {"pretrain": {"datasets": [pet], "steps": 5}}})
    files = {"pretrain_datasets_0": f"{pet}/stats.json", "pretrain_datasets_0_items": f"{pet}/items.json",
             "pretrain_datasets_0_users": f"{pet}/users.json", "pretrain_datasets_0_interactions": f"{pet}/interactions.npz"}
    assert exp.file_inputs("scientific", "zesrec", "main", 0) == files  # every file: a hand edit reruns the run
    assert exp.file_inputs("scientific", "recformer", "main", 0) == files
    assert exp.file_inputs("scientific", "sasrec", "main", 0) == {}


def test_a_run_counts_as_pretrained_by_any_route():
    from laser_repro.artifacts.runs import pretrained

    assert not pretrained({"init_from": None, "pretrain_datasets": [], "pretrain": {"steps": 0}})
    assert pretrained({"init_from": "runs/pet/zesrec/main/seed~0"})
    assert pretrained({"pretrain_datasets": ["data/pet"], "pretrain_epochs": 2})
    assert pretrained({"pretrain": {"datasets": ["data/pet"], "steps": 100}})
    assert pretrained({"init_checkpoint": "recformer_pretrain_ckpt.bin"})


def test_a_gpu_host_runs_one_language_model_job_at_a_time(tmp_path, monkeypatch):
    """No rule claimed a GPU: `snakemake --cores 8` on one GPU started up to 8 LLM jobs on it at once (6-7B models:
    out of memory). On a host with a GPU such a job claims every core; elsewhere one thread, as before."""
    from laser_repro.experiment.host import gpu_count, llm_job_threads

    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvme0"):
        (tmp_path / name).touch()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_count(tmp_path) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu_count(tmp_path) == 1
    assert gpu_count(tmp_path, visible="1") == 1 and gpu_count(tmp_path, visible="") == 0
    assert gpu_count(tmp_path, visible="0,-1,1") == 1  # CUDA reads up to the first -1
    assert gpu_count(tmp_path / "none", visible="0") == 0  # no device files, no GPU
    assert gpu_count(tmp_path, visible="NoDevFiles") == 0  # SLURM's word for none
    assert gpu_count(tmp_path, visible="GPU-8f2a,MIG-1c") == 2
    assert llm_job_threads(8, 1) == 8 and llm_job_threads(8, 0) == 1 and llm_job_threads(None, 2) == 1
    from laser_repro.experiment.host import job_threads  # the rules' threads: which jobs go through an LLM

    assert [job_threads(m, 8, 1) for m in ("laser-c", "llamarec", "kar", None, "sasrec", "fdsa")] == [8, 8, 8, 8, 1, 1]
    assert job_threads("laser-c", 8, 0) == 1 and job_threads("laser-c", None, 0) == 1  # no GPU; cores unset


def test_a_data_sets_input_files_leave_hidden_files_and_folders_out(tmp_path):
    """A file in a hidden subfolder of a user's input folder (a .git, an editor's cache) was a prepare input: each new
    one re-prepared the data set and retested every run of it."""
    root = tmp_path / "input"
    (root / "sub").mkdir(parents=True)
    (root / ".git" / "objects").mkdir(parents=True)
    for name in ("train.json", "sub/meta.json", ".DS_Store", ".git/objects/ab", "sub/.swp"):
        (root / name).write_text("x")
    assert layout.input_files(str(root)) == [str(root / "sub" / "meta.json"), str(root / "train.json")]
    assert layout.input_files(str(tmp_path / "missing")) == [str(tmp_path / "missing")]


def test_the_stale_check_hashes_each_run_config_as_its_trainer_reads_it(tmp_path):
    """The tables' stale check hashed the resolved dataclass, whose float field kept an int default (LlamaRec's
    lora_alpha 32), while the trainer hashed the YAML read back (32.0): every finished LlamaRec run was a false "stale,
    results of a different run config" gap in the embedded default's Table 2."""
    import yaml

    from laser_repro.experiment.plan import Experiment

    default = Experiment.from_files([REPO / "config.yaml", REPO / "workflow" / "default.yaml"])
    exp = paper_experiment(tmp_path)
    for e in (exp, default):
        keys = list(dict.fromkeys(e.all_runs()))
        assert {k.method for k in keys} >= {"llamarec", "laser-c", "recformer", "kar", "bert4rec"}
        for key in keys:
            args = (key.dataset, key.method, key.variant, key.seed)
            cls = type(e.resolved(*args))
            read_back = from_dict(cls, yaml.safe_load(yaml.safe_dump(e.resolved_dict(*args), sort_keys=False)))
            assert json.dumps(to_dict(e.trainer_config(*args)), sort_keys=True) == \
                json.dumps(to_dict(read_back), sort_keys=True), key.rel
    keys = list(dict.fromkeys(exp.all_runs()))
    llamarec = next(k for k in keys if k.method == "llamarec")
    assert to_dict(exp.resolved(*dataclasses.astuple(llamarec)))["lora_alpha"] == 32  # an int, hashed unlike 32.0
    assert isinstance(to_dict(exp.trainer_config(*dataclasses.astuple(llamarec)))["lora_alpha"], float)
