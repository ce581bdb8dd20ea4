"""Runs never lose or corrupt a result: strict run configs, NaN guard, device errors, one writer per
run folder, and results that never outlive a change of their data."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from laser_repro.cli import main as cli_main
from laser_repro.config import to_dict
from laser_repro.data.dataset import DataChanged, data_fingerprint, from_sequences, save_dataset
from laser_repro.idrec.config import IDRecRunConfig
from laser_repro.idrec.trainer import train_idrec
from laser_repro.train import scaffold
from test_workflow import REPO, copy_workflow

SMALL = {"hidden": 16, "max_len": 8, "inner": 32}


def ring(path, n_users=100, shift=1):
    rng = np.random.default_rng(0)
    seqs = [[(s + shift * k) % 40 for k in range(8)] for s in rng.integers(0, 40, n_users)]
    items = [{"id": f"i{i}", "title": f"widget {i}", "brand": "b", "category": "c"} for i in range(40)]
    return save_dataset(from_sequences("ring", "synthetic", items, [f"u{u}" for u in range(n_users)], seqs), path)


@pytest.fixture()
def data(tmp_path):
    return ring(tmp_path / "ring")


def cfg(data, **kw) -> IDRecRunConfig:
    return IDRecRunConfig(**{"dataset": str(data), "model": "sasrec", "max_epochs": 2, "batch_size": 64,
                             "progress": False, "model_config": SMALL, **kw})


# ---------------------------------------------------------------- run configs


@pytest.mark.parametrize("override, message", [
    ({"batch_size": -64}, "batch_size: -64 is out of range (expected >= 1)"),
    ({"max_epochs": -3}, "max_epochs: -3 is out of range (expected >= 1)"),
    ({"patience": -1}, "patience: -1 is out of range"),
    ({"train_user_fraction": 2.5}, "train_user_fraction: 2.5 is out of range (expected >= 0 and <= 1)"),
    ({"batch_size": 0}, "batch_size: 0 is out of range"),
    ({"eval_every": 0}, "eval_every: 0 is out of range"),
    ({"lr": "fast"}, "lr: expected a number, got 'fast'"),
    ({"model_config": {"heads": 3}}, "model_config.heads: hidden = 16 does not split evenly over 3 heads"),
    ({"device": "cuda"} if not torch.cuda.is_available() else {"device": "cuda:99"}, "device: 'cuda"),
    # a raw (unprepared) or mistyped data set said only "raw/stats.json: file not found"
    ({"dataset": "raw"}, "dataset: raw/stats.json is missing (expected a prepared data set (`laser-repro data "
                         "prepare`); a relative path is read from "),
])
def test_bad_run_configs_stop_with_the_key(data, tmp_path, caplog, override, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"dataset": str(data), "model": "sasrec", "progress": False,
                                    "model_config": SMALL, **{k: v for k, v in override.items() if k != "model_config"},
                                    **({"model_config": {**SMALL, **override["model_config"]}}
                                       if "model_config" in override else {})}))
    assert cli_main(["train-idrec", "--config", str(path), "--out", str(tmp_path / "out")]) == 1
    assert message in caplog.text
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("text, message", [
    # YAML reads `1:` as a number; sorting it with the string keys was a TypeError traceback
    (b"model: sasrec\n1: a\nfoo: b\n", "run.yaml: IDRecRunConfig: key(s) [1] are not names; expected some of ["),
    (b"model: sasrec\nbackbone: \"\xff\xfe\"\n", "run.yaml: not UTF-8 text (byte 25: invalid start byte); "
                                                  "expected a UTF-8 run config"),
    (b"model: [sasrec\n", "run.yaml: invalid YAML: "),
])
def test_a_config_file_that_is_not_a_config_is_refused_by_file(tmp_path, caplog, text, message):
    (tmp_path / "run.yaml").write_bytes(text)
    assert cli_main(["train-idrec", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")]) == 1
    assert message in caplog.text and "Traceback" not in caplog.text


def test_a_workflow_config_that_is_not_utf8_is_refused_by_file(tmp_path):
    from laser_repro.experiment.config import WorkflowConfigError, load_files

    (tmp_path / "wf.yaml").write_bytes(b"seeds: [0]\nnote: \"\xff\"\n")
    with pytest.raises(WorkflowConfigError, match=r"wf.yaml: not UTF-8 text \(byte 18: invalid start byte\); "
                                                  "expected a UTF-8 workflow config"):
        load_files([tmp_path / "wf.yaml"])


def test_a_checkpoint_of_an_earlier_model_version_is_refused_by_file(data, tmp_path, kill_on_call, monkeypatch):
    """FDSA and RecGURU changed their layers under the same config: resuming an old checkpoint.pt was a raw
    load_state_dict RuntimeError. It is now refused by file, saying how to go on."""
    from laser_repro.idrec import trainer as idrec_trainer

    real = kill_on_call(idrec_trainer, "_run_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        train_idrec(cfg(data), tmp_path / "run")
    monkeypatch.setattr(idrec_trainer, "_run_epoch", real)
    path = tmp_path / "run" / "checkpoint.pt"
    blob = torch.load(path, weights_only=False)
    blob["model"] = {k.replace("item_emb", "old_item_emb"): v for k, v in blob["model"].items()}  # renamed layer
    torch.save(blob, path)
    with pytest.raises(ValueError, match=r"checkpoint.pt: written by an earlier version of sasrec whose layers "
                                         r"differ \(Error\(s\) in loading .*remove the run folder to train it again"):
        train_idrec(cfg(data), tmp_path / "run")


def test_metrics_list_every_session_of_a_resumed_run_and_a_mix_is_said(data, tmp_path, kill_on_call, monkeypatch,
                                                                        caplog):
    """metrics.json named the last session's device alone: a run resumed on another device (or under other code)
    read as if it had run wholly there. Each session is recorded in the checkpoint, and all reach metrics.json."""
    from laser_repro.idrec import trainer as idrec_trainer

    whole = train_idrec(cfg(data), tmp_path / "whole")
    assert [s["device"] for s in whole["sessions"]] == [whole["device"]] and len(whole["sessions"][0]["git_commit"]) > 6
    real = kill_on_call(idrec_trainer, "_run_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        train_idrec(cfg(data), tmp_path / "run")
    monkeypatch.setattr(idrec_trainer, "_run_epoch", real)
    monkeypatch.setattr(scaffold, "device_description", lambda device: "cuda:0 (NVIDIA H200)")  # resumed elsewhere
    resumed = train_idrec(cfg(data), tmp_path / "run")
    assert [s["device"] for s in resumed["sessions"]] == [whole["device"], "cuda:0 (NVIDIA H200)"]
    assert "resumes a checkpoint written on cpu" in caplog.text and "its results mix sessions" in caplog.text
    assert "this run resumes" not in caplog.text.split("resumes a checkpoint written on cpu")[0]  # said once


def test_recguru_that_ends_before_its_bpr_stage_says_so_and_reports_the_last_epoch(data, tmp_path, caplog):
    """Only RecGURU's BPR stage is validated: a run whose max_epochs ends inside the reconstruction stage (a smoke
    test's max_epochs: 1) validates and reports its last epoch, with a warning that the recommender is untrained."""
    rec = train_idrec(cfg(data, model="recguru", max_epochs=2, model_config={**SMALL, "ae_epochs": 5}), tmp_path / "r")
    assert ["valid" in h for h in rec["history"]] == [False, True] and rec["best_epoch"] == 2
    assert "max_epochs 2 ends before recguru's validated stage" in caplog.text


def test_yaml_1e_minus_3_is_a_float(data, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"dataset: {data}\nmodel: sasrec\nlr: 1e-3\nmax_epochs: 1\nprogress: false\n"
                    "model_config: {hidden: 16, max_len: 8, inner: 32}\n")
    assert yaml.safe_load(path.read_text())["lr"] == "1e-3"  # what YAML hands us
    assert cli_main(["train-idrec", "--config", str(path), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]["lr"] == 0.001


def test_workflow_dry_run_fails_on_bad_values(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    for overlay, message in (("run: {idrec: {batch_size: -5}}", "batch_size: -5 is out of range"),
                             ("run: {laser: {optim.lr: '-1e-3'}}", "optim.lr: -0.001 is out of range"),
                             ("run: {laser: {mformer.top_k: 9}}", "mformer.top_k: 9 experts cannot be selected")):
        (wf / "bad.yaml").write_text(overlay + "\n")
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "bad.yaml"], cwd=wf,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, overlay
    # seeds from the command line arrive as strings: read as numbers
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile",
                           "workflow/default.yaml", "--config", "seeds=[0]"], cwd=wf, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---------------------------------------------------------------- NaN, locks


def test_a_huge_learning_rate_stops_the_run_with_a_clear_error(data, tmp_path, caplog):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg(data, lr=1e9, max_epochs=5).__dict__))))
    assert cli_main(["train-idrec", "--config", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "the training loss is nan; stopping" in caplog.text and "lr 1e+09" in caplog.text
    assert not (tmp_path / "out" / "metrics.json").exists()  # never a NaN epoch reported as best


def test_non_finite_loss_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    from laser_repro.idrec.sasrec import SASRec

    real, calls = SASRec.batch_loss, {"n": 0}

    def poisoned(self, *args, **kwargs):  # finite in epoch 1 (8 steps of 64 of 500 rows), NaN from epoch 2 on
        calls["n"] += 1
        loss = real(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] > 8 else loss

    monkeypatch.setattr(SASRec, "batch_loss", poisoned)
    with pytest.raises(scaffold.NonFiniteLoss, match="epoch 2, step 1"):
        train_idrec(cfg(data, max_epochs=3), tmp_path / "out")
    ckpt = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 1 and np.isfinite(ckpt["state"]["history"][0]["loss"])
    monkeypatch.setattr(SASRec, "batch_loss", real)
    resumed = train_idrec(cfg(data, max_epochs=3), tmp_path / "out")  # the kept checkpoint resumes
    reference = train_idrec(cfg(data, max_epochs=3), tmp_path / "reference")
    assert resumed["test"] == reference["test"] and resumed["epochs_run"] == 3


def test_a_second_writer_is_refused(data, tmp_path):
    out = tmp_path / "out"
    with scaffold.run_lock(out):
        with pytest.raises(ValueError, match=r"another trainer is writing this run folder \(pid \d+"):
            train_idrec(cfg(data), out)
    rec = train_idrec(cfg(data), out)  # the lock died with its holder
    assert rec["epochs_run"] == 2


def test_a_file_system_without_flock_warns_and_trains(data, tmp_path, monkeypatch, caplog):
    """A file system without flock (NFS without lockd: ENOLCK; Lustre mounted noflock: ENOSYS): the run goes on with a
    warning (the workflow runs one job per run folder); any other lock error still stops it."""
    import errno
    import logging

    def no_flock(fh, flags):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(scaffold.fcntl, "flock", no_flock)
    with caplog.at_level(logging.WARNING, logger="laser_repro"):
        assert train_idrec(cfg(data), tmp_path / "out")["epochs_run"] == 2
    assert "cannot lock files (No locks available)" in caplog.text

    def broken(fh, flags):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(scaffold.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"):
        with scaffold.run_lock(tmp_path / "other"):
            pass


def test_device_auto_says_when_a_given_gpu_is_invisible(monkeypatch, caplog):
    """A SLURM job given a GPU that torch cannot see (a site's step setup) would run a 7B backbone on the CPU for
    days without a word: ``auto`` still falls back, but says so."""
    import logging

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level(logging.WARNING, logger="laser_repro"):
        assert scaffold.resolve_device("auto").type == "cpu"
    assert "given GPU(s) 0 (CUDA_VISIBLE_DEVICES), but torch" in caplog.text
    caplog.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with caplog.at_level(logging.WARNING, logger="laser_repro"):
        scaffold.resolve_device("auto")
    assert caplog.text == ""


def test_a_session_removes_a_killed_writers_temporary_files(tmp_path):
    """A kill during a checkpoint save (seen on a real benchmark) left a 36 MB ``.checkpoint.pt.XXXXXXXX.pt.tmp``."""
    import tempfile

    out = tmp_path / "out"
    out.mkdir()
    fd, stale = tempfile.mkstemp(prefix=".checkpoint.pt.", suffix=".pt.tmp", dir=out)  # atomic_path's own name
    os.close(fd)
    fd, stale_metrics = tempfile.mkstemp(prefix=".metrics.json.", suffix=".tmp", dir=out)
    os.close(fd)
    kept = [out / ".notes.txt.abcdefgh.tmp", out / ".checkpoint.pt.bak", out / "checkpoint.pt"]  # not its writer's
    for path in kept:
        path.write_text("x")
    with scaffold.run_session(out):
        assert not Path(stale).exists() and not Path(stale_metrics).exists()
        assert all(path.exists() for path in kept)
    assert sum("a temporary file a killed session left" in line for line in (out / "train.log").open()) == 2


def test_a_checkpoint_resumes_on_a_node_that_shows_fewer_gpus(monkeypatch, caplog):
    """Checkpoints held every visible GPU's generator state and restored them all: one written where two GPUs showed
    raised IndexError on a node given one (and with one GPU where the run had used the second, the stream restarts)."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: [restored.append(s) for s in states])
    state = scaffold.rng_state()
    assert state["cuda"].tolist() == [7]  # the current device's state alone
    scaffold.set_rng_state(state)
    old = {**state, "cuda": [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    scaffold.set_rng_state(old)  # a checkpoint before: two GPUs' states, resumed on device 0
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="laser_repro"):
        scaffold.set_rng_state(old)
    assert [t.tolist() for t in restored] == [[7], [1]] and "not device 2: its stream restarts" in caplog.text


def test_a_config_tried_and_reverted_takes_its_results_back(data, tmp_path):
    """--replace-stale (every workflow job passes it) deleted a run's results and checkpoint when its config changed:
    trying another lr and reverting retrained the run (days at paper scale). They are set aside in
    stale/<resume hash>/ and taken back, results with their checkpoint, when that config returns; only the set
    just made and the current config's stay."""
    out = tmp_path / "run"
    first = train_idrec(cfg(data, lr=0.01), out)
    model = (out / "model.pt").read_bytes()
    second = train_idrec(cfg(data, lr=0.02), out, replace_stale=True)
    assert second["config"]["lr"] == 0.02 and second["test"] != first["test"]
    h1, h2 = first["resume_hash"][:16], second["resume_hash"][:16]
    everything = ["checkpoint.pt", "metrics.json", "model.pt", "ranks.npz"]
    assert sorted(p.name for p in (out / "stale" / h1).iterdir()) == everything
    assert train_idrec(cfg(data, lr=0.01), out, replace_stale=True) == first  # taken back, not trained
    assert (out / "model.pt").read_bytes() == model
    assert torch.load(out / "checkpoint.pt", weights_only=False)["resume_hash"] == first["resume_hash"]
    assert sorted(p.name for p in (out / "stale" / h2).iterdir()) == everything and not (out / "stale" / h1).exists()
    log = (out / "train.log").read_text()
    assert log.count("took back metrics.json") == 1 and log.count("epoch 1 loss") == 2  # two trainings in all

    # in the workflow Snakemake removes a job's outputs before it runs, so only checkpoints are set aside: the
    # final one comes back and the run only tests again
    for name in ("metrics.json", "model.pt", "ranks.npz"):
        (out / name).unlink()
        (out / "stale" / h2 / name).unlink()
    again = train_idrec(cfg(data, lr=0.02), out, replace_stale=True)
    assert again["test"] == second["test"] and again["valid"] == second["valid"]
    log = (out / "train.log").read_text()
    assert log.count("took back checkpoint.pt") == 1 and log.count("epoch 1 loss") == 2  # no epoch trained again
    # a third config: the set it makes is kept (lr 0.02's), lr 0.01's goes
    assert sorted(p.name for p in (out / "stale").iterdir()) == [h1]
    train_idrec(cfg(data, lr=0.03), out, replace_stale=True)
    assert sorted(p.name for p in (out / "stale").iterdir()) == [h2]


def test_results_taken_back_replace_a_model_another_config_stranded(data, tmp_path):
    """A session killed in its final writes (model.pt and ranks.npz written, metrics.json not) left them beside the
    results another config took back: its metrics.json was served with the stranded model.pt."""
    out = tmp_path / "run"
    b = train_idrec(cfg(data, lr=0.02), out)
    b_model = (out / "model.pt").read_bytes()
    train_idrec(cfg(data, lr=0.01), out, replace_stale=True)  # B's set aside
    (out / "metrics.json").unlink()  # as if A was killed before its metrics.json: its model and ranks stay
    assert (out / "model.pt").read_bytes() != b_model
    assert train_idrec(cfg(data, lr=0.02), out, replace_stale=True) == b
    assert (out / "model.pt").read_bytes() == b_model


def test_train_log_keeps_every_attempt_and_how_each_ended(tmp_path, monkeypatch):
    """Snakemake removes a job's log before a retry runs it, so the killed attempt's traceback was lost: the run
    folder's train.log (never removed) names each session's origin and how it ended, SIGTERM (a SLURM time limit,
    a cancel) included."""
    import signal
    import time

    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with pytest.raises(RuntimeError, match="CUDA out of memory"), scaffold.run_session(out):
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setenv("SLURM_JOB_ID", "4243")
    with pytest.raises(SystemExit) as stopped, scaffold.run_session(out):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # put back after the session
    log = (out / "train.log").read_text()
    first, second = log.split("session started")[1:]
    assert "SLURM job 4242" in first and "session ended by RuntimeError: CUDA out of memory" in first
    assert "Traceback" in first and 'raise RuntimeError("CUDA out of memory")' in first
    assert "SLURM job 4243" in second and "session ended by Terminated: 143" in second
    with scaffold.run_session(out):
        pass
    assert (out / "train.log").read_text().count("session ended") == 2  # a clean session logs no end


def test_an_id_trainer_removes_a_killed_writers_temporary_feature_files(data, tmp_path):
    """The ID trainer also writes its text and knowledge features (up to 25 MB) into the run folder; a kill while
    it encoded left their temporaries, which the lock's sweep of the scaffold's own four files did not remove."""
    import tempfile

    from laser_repro.idrec.trainer import KNOWLEDGE_FILE, TEXT_FILE

    out = tmp_path / "out"
    out.mkdir()
    stale = []
    for name in (TEXT_FILE, KNOWLEDGE_FILE):
        fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".npz.tmp", dir=out)  # atomic_path's own name
        os.close(fd)
        stale.append(Path(path))
    kept = out / f".{TEXT_FILE}.bak"
    kept.write_text("x")
    rec = train_idrec(cfg(data), out)
    assert rec["epochs_run"] == 2
    assert not any(path.exists() for path in stale) and kept.exists()
    assert sum("a temporary file a killed session left" in line for line in (out / "train.log").open()) == 2


def test_replace_stale_never_removes_what_the_suite_did_not_write(data, tmp_path):
    """--replace-stale once removed any metrics.json without this run's hash (another tool's, with the model and
    ranks beside it) and any checkpoint.pt (a plain state dict); a metrics.json holding a list raised AttributeError."""
    out = tmp_path / "out"
    out.mkdir()
    theirs = {"metrics.json": '{"ndcg@10": 0.3}', "model.pt": "their weights", "ranks.npz": "their ranks"}
    for name, text in theirs.items():
        (out / name).write_text(text)
    with pytest.raises(scaffold.StaleRun, match=r"out/metrics.json: not a metrics.json this suite wrote \(expected a "
                                                r"JSON object with a resume_hash\); move it away"):
        train_idrec(cfg(data), out, replace_stale=True)
    assert all((out / name).read_text() == text for name, text in theirs.items())
    (out / "metrics.json").write_text("[1, 2]")
    with pytest.raises(scaffold.StaleRun, match=r"out/metrics.json: not a metrics.json this suite wrote"):
        train_idrec(cfg(data), out, replace_stale=True)
    for name in theirs:
        (out / name).unlink()
    torch.save({"weight": torch.ones(2)}, out / "checkpoint.pt")  # a state dict, not the suite's checkpoint
    with pytest.raises(scaffold.StaleRun, match=r"out/checkpoint.pt: not a checkpoint this suite wrote"):
        train_idrec(cfg(data), out, replace_stale=True)
    assert torch.load(out / "checkpoint.pt")["weight"].tolist() == [1.0, 1.0]
    torch.save({"config_hash": "0" * 16, "state": {}}, out / "checkpoint.pt")  # the suite's, before 2026-11-28
    assert train_idrec(cfg(data), out, replace_stale=True)["epochs_run"] == 2  # replaced, as the suite's own
    shutil.rmtree(out)
    first = train_idrec(cfg(data), out)  # the suite's own stale files are still replaced
    again = train_idrec(cfg(data, seed=1), out, replace_stale=True)
    assert again["seed"] == 1 and first["seed"] == 0


def test_metrics_json_is_strict():
    from laser_repro.io import write_json

    with pytest.raises(ValueError, match="refusing to write non-finite numbers"):
        write_json("/nonexistent/never-written.json", {"ndcg@10": float("nan")})


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_read_from_json_is_refused_by_file_and_line(tmp_path, const):
    """Python's json reads NaN/Infinity; a hand-edited metrics.json with one put 'inf' in Table 2 as the best cell."""
    from laser_repro.io import read_json

    path = tmp_path / "metrics.json"
    path.write_text('{"method": "NaN",\n "test": {"mrr": 0.04,\n  "ndcg@10": ' + const + '}}\n')
    with pytest.raises(ValueError, match=rf"metrics.json:3: {const} is not a JSON number; expected a finite"):
        read_json(path)
    path.write_text('{"method": "NaN", "test": {"ndcg@10": 1e308, "mrr": -0.0}}')  # finite numbers and strings
    assert read_json(path) == {"method": "NaN", "test": {"ndcg@10": 1e308, "mrr": 0.0}}


# ---------------------------------------------------------------- data fingerprints


def test_a_table_read_from_a_spec_shows_a_run_whose_data_or_inputs_changed_as_a_gap(data, tmp_path):
    """`laser-repro artifact --spec` (a spec the workflow wrote) once read a run whose data set was re-prepared
    since, or whose upstream run was retrained, as that cell's result: only --config checked staleness."""
    from laser_repro.artifacts.runs import load_group
    from laser_repro.experiment.layout import run_dir
    from laser_repro.experiment.specs import Cell
    from laser_repro.io import write_json

    runs = tmp_path / "runs"
    train_idrec(cfg(data), Path(run_dir(str(runs), "ring", "sasrec", "main", 0)))
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "model.pt").write_bytes(b"weights v1")
    knowledge = tmp_path / "knowledge.json"
    knowledge.write_text("{}")
    down = Path(run_dir(str(runs), "ring", "laser-c", "main", 0))  # a downstream run's record, by hand
    down.mkdir(parents=True)
    write_json(down / "metrics.json", {
        "method": "laser-c", "seed": 0, "data_fingerprint": data_fingerprint(data), "test": {"ndcg@10": 0.1},
        "config": {"dataset": str(data), "idrec_run": str(upstream), "knowledge_file": str(knowledge),
                   "input_fingerprints": {"idrec_run": scaffold.file_digest(upstream / "model.pt"),
                                          "knowledge_file": scaffold.file_digest(knowledge)}}})
    assert len(load_group(runs, Cell("ring", "sasrec"), [0]).runs) == 1
    assert len(load_group(runs, Cell("ring", "laser-c"), [0]).runs) == 1
    (upstream / "model.pt").write_bytes(b"weights v2")  # the upstream run retrained
    group = load_group(runs, Cell("ring", "laser-c"), [0])
    assert group.runs == [] and group.missing[0].stale == "computed from other inputs (idrec_run changed since)"
    (upstream / "model.pt").write_bytes(b"weights v1")
    knowledge.write_text('{"entries": {}}')
    assert load_group(runs, Cell("ring", "laser-c"), [0]).missing[0].stale.endswith("(knowledge_file changed since)")
    knowledge.write_text("{}")
    assert len(load_group(runs, Cell("ring", "laser-c"), [0]).runs) == 1
    old = data_fingerprint(data)
    ring(data, shift=3)  # the data set re-prepared with other interactions
    for method in ("sasrec", "laser-c"):
        group = load_group(runs, Cell("ring", method), [0])
        assert group.runs == [] and group.missing[0].stale == (
            f"its data set {data} was re-prepared since (fingerprint {data_fingerprint(data)}; the run read {old})")
    shutil.rmtree(data)  # results kept where their data is not (a laptop reading results): nothing to check
    assert len(load_group(runs, Cell("ring", "sasrec"), [0]).runs) == 1



def test_a_run_copied_to_another_data_set_or_variant_is_a_gap_not_a_result(data, tmp_path):
    """Artifacts once read a run folder copied under another data set or variant as that cell's result
    (only the method and seed were checked); metrics.json now records the folder the trainer wrote to."""
    from laser_repro.artifacts.runs import load_group
    from laser_repro.experiment.layout import run_dir
    from laser_repro.experiment.specs import Cell

    runs = tmp_path / "runs"
    src = Path(run_dir(str(runs), "ring", "sasrec", "main", 0))
    record = train_idrec(cfg(data), src)
    assert record["run_folder"] == str(src.resolve()) and record["dataset"] == "ring"
    assert len(load_group(runs, Cell("ring", "sasrec"), [0]).runs) == 1
    for dataset, variant, why in (("pet", "main", "it records data folder 'ring', but its folder is for 'pet'"),
                                  ("ring", "no-prefix", "it records run folder 'ring/sasrec/main/seed~0', but its "
                                                        "folder is for 'ring/sasrec/no-prefix/seed~0'")):
        shutil.copytree(src, run_dir(str(runs), dataset, "sasrec", variant, 0))
        group = load_group(runs, Cell(dataset, "sasrec", variant), [0])
        assert group.runs == [] and group.missing[0].stale == why + " (copied or moved?)"
    shutil.move(str(runs), tmp_path / "moved")  # the whole tree moved: its runs still answer their cells
    assert len(load_group(tmp_path / "moved", Cell("ring", "sasrec"), [0]).runs) == 1
    # a data set's runs on another disk behind a symlink (runs/ring -> /scratch/...) still answer their cells
    (tmp_path / "linked").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "linked" / "ring").symlink_to(tmp_path / "scratch")
    train_idrec(cfg(data), Path(run_dir(str(tmp_path / "linked"), "ring", "sasrec", "main", 0)))
    assert len(load_group(tmp_path / "linked", Cell("ring", "sasrec"), [0]).runs) == 1


def test_results_never_outlive_their_data(tmp_path, caplog):
    data = ring(tmp_path / "ring")
    first = train_idrec(cfg(data), tmp_path / "run")
    assert first["data_fingerprint"] == data_fingerprint(data) == first["config"]["data_fingerprint"]
    # the same data again: nothing to do
    assert train_idrec(cfg(data), tmp_path / "run")["wall_time_s"] == first["wall_time_s"]
    # different data prepared at the same path: the old results are refused, never returned
    shutil.rmtree(data)
    ring(data, shift=3)
    with pytest.raises(ValueError, match="results of the data set with fingerprint .* the data set now has"):
        train_idrec(cfg(data), tmp_path / "run")
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(ValueError, match="checkpoint of the data set with fingerprint"):
        train_idrec(cfg(data), tmp_path / "run")  # nor resumed from
    fresh = train_idrec(cfg(data), tmp_path / "run", replace_stale=True)  # the workflow's --replace-stale
    assert fresh["data_fingerprint"] == data_fingerprint(data) != first["data_fingerprint"]
    assert "setting it aside in stale/" in caplog.text and "and starting over" in caplog.text
    # a run config written for other data is refused before anything runs
    with pytest.raises(ValueError, match="this run config was written for 0123456789abcdef"):
        train_idrec(cfg(data, data_fingerprint="0123456789abcdef"), tmp_path / "other")


def test_a_data_folder_edited_by_hand_is_refused_and_its_results_are_gaps(data, tmp_path):
    """The fingerprint was read from stats.json: interactions edited by hand in a prepared folder kept it, so the
    finished runs of the old data stayed finished (and a resumed run trained on the new data under the old name)."""
    from laser_repro.artifacts.runs import load_group
    from laser_repro.artifacts.table1 import compute_table1
    from laser_repro.experiment.layout import run_dir
    from laser_repro.experiment.specs import Cell

    runs = tmp_path / "runs"
    run = Path(run_dir(str(runs), "ring", "sasrec", "main", 0))
    record = train_idrec(cfg(data), run)
    kept = (run / "metrics.json").read_bytes()
    original = (data / "interactions.npz").read_bytes()
    with np.load(data / "interactions.npz") as z:
        arrays = dict(z)
    arrays["items"] = arrays["items"].copy()
    arrays["items"][0] = (arrays["items"][0] + 1) % 40  # one interaction, by hand; stats.json untouched
    np.savez(data / "interactions.npz", **arrays)
    why = (f"{data.absolute()}: its items.json, users.json and interactions.npz are no longer the data its stats.json "
           f"was written for (fingerprint ")
    with pytest.raises(ValueError, match=f"recorded {record['data_fingerprint']}\\): changed by hand"):
        data_fingerprint(data)
    for replace in (False, True):  # refused before the run folder is touched, --replace-stale or not
        with pytest.raises(ValueError, match="changed by hand"):
            train_idrec(cfg(data), run, replace_stale=replace)
        assert (run / "metrics.json").read_bytes() == kept
    group = load_group(runs, Cell("ring", "sasrec"), [0])  # an artifact shows the gap, with the reason
    assert group.runs == [] and group.missing[0].stale.startswith(why)
    row = compute_table1(tmp_path, ["ring"])[0]  # Table 1's counts no longer describe the folder
    assert row.ours is None and row.reason.startswith(why)
    (tmp_path / "laptop").mkdir()  # results copied with stats.json alone: its recorded fingerprint is all there is
    shutil.copy(data / "stats.json", tmp_path / "laptop")
    assert data_fingerprint(tmp_path / "laptop") == record["data_fingerprint"]
    shutil.copy(data / "items.json", tmp_path / "laptop")  # part of the data: checked, not trusted (was trusted)
    with pytest.raises(DataChanged, match="cannot be read as a prepared data set"):
        data_fingerprint(tmp_path / "laptop")
    for name in ("users.json", "interactions.npz"):
        shutil.copy(data / name, tmp_path / "laptop")
    items = json.loads((data / "items.json").read_text())
    (tmp_path / "laptop" / "items.json").write_text(json.dumps([str(i) for i in range(len(items))]))
    with pytest.raises(DataChanged, match=r"cannot be read as a prepared data set \(TypeError"):  # was a bare TypeError
        data_fingerprint(tmp_path / "laptop")
    (data / "interactions.npz").write_bytes(original)  # put back: the same data, the finished run answers again
    assert data_fingerprint(data) == record["data_fingerprint"]
    # stats.json's counts edited by hand (Table 1 prints them, artifacts read eval_users): its fingerprint still
    # matched the data, so the edit passed
    stats = (data / "stats.json").read_text()
    users = json.loads(stats)["users"]
    (data / "stats.json").write_text(stats.replace(f'"users": {users}', f'"users": {users + 1}'))
    with pytest.raises(DataChanged, match=rf"its stats\.json says users {users + 1} \(its data: {users}\): edited by "
                                          r"hand since `laser-repro data prepare`; prepare it again"):
        data_fingerprint(data)
    (data / "stats.json").write_text(stats)
    assert data_fingerprint(data) == record["data_fingerprint"]
    assert train_idrec(cfg(data), run)["wall_time_s"] == record["wall_time_s"]
    assert len(load_group(runs, Cell("ring", "sasrec"), [0]).runs) == 1


@pytest.mark.slow
def test_new_data_reruns_exactly_the_affected_runs(tmp_path):
    """Re-prepare one data set differently and rerun the workflow: only its runs retrain."""
    wf = copy_workflow(tmp_path / "wf")
    targets = [f"results/default/runs/{d}/{m}/main/seed~0/metrics.json"
               for d in ("synthetic", "synthetic-b") for m in ("sasrec",)]
    base = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "workflow/default.yaml"]
    subprocess.run(base, cwd=wf, check=True, capture_output=True, timeout=600)
    before = {t: json.loads((wf / t).read_text()) for t in targets}
    (wf / "more.yaml").write_text("datasets:\n  synthetic: {users: 130}\n")
    dry = subprocess.run([*base, "more.yaml", "-n"], cwd=wf, capture_output=True, text=True, timeout=300)
    jobs = dry.stdout + dry.stderr
    for t in targets:
        assert (f"output: {t}" in jobs) == ("/synthetic/" in t), t
    subprocess.run([*base, "more.yaml"], cwd=wf, check=True, capture_output=True, timeout=600)
    for t in targets:
        after = json.loads((wf / t).read_text())
        if "/synthetic/" in t:
            assert after["data_fingerprint"] != before[t]["data_fingerprint"] and after["train_users"] > before[t]["train_users"]
        else:
            assert after == before[t]
    assert "Nothing to be done" in subprocess.run([*base, "more.yaml", "-n"], cwd=wf, capture_output=True, text=True,
                                                  timeout=300).stdout


def test_a_workflow_rerun_with_other_test_users_does_not_retrain(tmp_path):
    """Under a validation cap, changing max_eval_users (or an execution key) reruns a Laser job; Snakemake removes
    the job's outputs before it starts, so the trainer's retest never saw the finished run and --replace-stale removed its
    checkpoint: the run trained again. Now its checkpoint resumes and model.pt comes out the same bytes."""
    wf = copy_workflow(tmp_path / "wf")
    run = wf / "results/default/runs/synthetic/laser-c/main/seed~0"
    base = [sys.executable, "-m", "snakemake", str(run.relative_to(wf) / "metrics.json"), "--cores", "2",
            "--configfile", "workflow/default.yaml", "cap.yaml"]
    (wf / "cap.yaml").write_text("run:\n  laser:\n    max_valid_users: 60\n")
    subprocess.run(base, cwd=wf, check=True, capture_output=True, timeout=600)
    first, model = json.loads((run / "metrics.json").read_text()), (run / "model.pt").read_bytes()
    # other test users and other execution settings (a model.pt recorded them: the runs reading it went stale)
    (wf / "cap.yaml").write_text("run:\n  laser:\n    max_valid_users: 60\n    max_eval_users: 30\n"
                                 "    eval_batch_size: 7\n    item_batch_size: 5\n")
    subprocess.run(base, cwd=wf, check=True, capture_output=True, timeout=600)
    after = json.loads((run / "metrics.json").read_text())
    assert (first["test"]["n"], after["test"]["n"]) == (120, 30) and after["history"] == first["history"]
    assert (run / "model.pt").read_bytes() == model
    log = (run / "train.log").read_text()
    assert log.count("phase 1 epoch 0:") == 1 and "checkpoint of this very training with other max_eval_users" in log
    assert "Nothing to be done" in subprocess.run([*base, "-n"], cwd=wf, capture_output=True, text=True,
                                                  timeout=300).stdout


# ---------------------------------------------------------------- inputs besides the data set


def test_a_run_is_stale_once_a_run_it_reads_changes(data, tmp_path):
    """init_from names another run: the digest of its model.pt joins this run's contract, so
    retraining the upstream run makes the downstream results and checkpoint stale (also when the
    upstream config is the same: its weights are what the downstream run read)."""
    upstream, downstream = tmp_path / "up", tmp_path / "down"
    train_idrec(cfg(data, seed=0), upstream)
    first = scaffold.file_digest(upstream / "model.pt")
    down = train_idrec(cfg(data, init_from=str(upstream)), downstream)
    assert down["config"]["input_fingerprints"] == {"init_from": first}
    back = scaffold.recorded_config(IDRecRunConfig, down)  # the recorded config reads back, fingerprints aside
    assert all(to_dict(back)[k] == v for k, v in down["config"].items() if k != "input_fingerprints")
    assert back.init_from == str(upstream) and back.data_fingerprint == down["data_fingerprint"]
    assert train_idrec(cfg(data, init_from=str(upstream)), downstream) == down  # unchanged input: nothing to do

    train_idrec(cfg(data, seed=1), upstream, replace_stale=True)  # the upstream run is retrained
    second = scaffold.file_digest(upstream / "model.pt")
    assert second != first
    with pytest.raises(scaffold.StaleRun, match=r"computed from other inputs \(init_from changed since\)"):
        train_idrec(cfg(data, init_from=str(upstream)), downstream)
    again = train_idrec(cfg(data, init_from=str(upstream)), downstream, replace_stale=True)
    assert again["config"]["input_fingerprints"] == {"init_from": second}
    assert again["resume_hash"] != down["resume_hash"]


def test_a_missing_input_is_named_and_the_finished_run_it_fed_is_kept(data, tmp_path):
    """An input the config names but that is gone (a results-only copy, a removed model.pt) dropped out of the resume
    contract: the finished run looked "computed from other inputs (init_from changed since)", and --replace-stale
    removed its results and checkpoint before the trainer failed on the missing file. Now the trainer stops first,
    naming the key, the path and what it must be, and touches nothing."""
    upstream, downstream = tmp_path / "up", tmp_path / "down"
    train_idrec(cfg(data), upstream)
    train_idrec(cfg(data, init_from=str(upstream)), downstream)
    before = {p.name: p.read_bytes() for p in downstream.iterdir() if p.is_file() and p.suffix in (".json", ".pt", ".npz")}
    assert {"metrics.json", "model.pt", "ranks.npz", "checkpoint.pt"} <= set(before)
    (upstream / "model.pt").unlink()
    for replace in (False, True):
        with pytest.raises(FileNotFoundError, match=r"init_from: \S+/up/model\.pt is missing \(expected the model\.pt "
                                                    r"of a finished run\); nothing in the run folder"):
            train_idrec(cfg(data, init_from=str(upstream)), downstream, replace_stale=replace)
    assert {name: (downstream / name).read_bytes() for name in before} == before
    # the upstream run, asked again, tests its final checkpoint to write the lost model.pt (nothing trained again)
    record = json.loads((upstream / "metrics.json").read_text())
    again = train_idrec(cfg(data), upstream)
    assert again["test"] == record["test"] and again["best_epoch"] == record["best_epoch"]
    assert (upstream / "model.pt").is_file() and len(again["sessions"]) == len(record["sessions"]) + 1
    model = (upstream / "model.pt").read_bytes()
    (upstream / "model.pt").unlink()
    blob = torch.load(upstream / "checkpoint.pt", weights_only=False)
    blob["model"] = {k.replace("item_emb", "old_item_emb"): v for k, v in blob["model"].items()}  # an earlier version
    torch.save(blob, upstream / "checkpoint.pt")  # the trainer refuses to resume it: the record stands (it raised)
    assert train_idrec(cfg(data), upstream) == again and not (upstream / "model.pt").exists()
    (upstream / "checkpoint.pt").unlink()  # nothing left to write it from: the record stands, nothing is retrained
    assert train_idrec(cfg(data), upstream) == again and not (upstream / "model.pt").exists()
    (upstream / "model.pt").write_bytes(model)
    # a model.pt without the metrics.json its trainer writes last (a session killed between the two writes, a
    # copied-in file) is not a finished run either
    (upstream / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"init_from: \S+/up has a model\.pt but no metrics\.json a trainer "
                                                r"wrote \(expected the model\.pt of a finished run: a run killed"):
        train_idrec(cfg(data, init_from=str(upstream)), downstream, replace_stale=True)
    assert {name: (downstream / name).read_bytes() for name in before} == before
    prepared = cfg(data, model="zesrec", pretrain_datasets=[str(tmp_path / "nowhere")], pretrain_epochs=1)
    with pytest.raises(FileNotFoundError, match=r"pretrain_datasets\[0\]: \S+nowhere/stats\.json is missing \(expected a "
                                                r"prepared data set"):
        train_idrec(prepared, tmp_path / "pre")
    assert not (tmp_path / "pre").exists()


def test_a_damaged_or_foreign_torch_file_is_named_with_what_was_expected(data, tmp_path):
    """A truncated checkpoint.pt (a partial copy) gave torch's "failed finding central directory" with no path, and a
    model.pt of another trainer a bare KeyError ('trainable', 'state_dict'): each now names the file and what it had
    to be, and nothing is removed."""
    run = tmp_path / "run"
    train_idrec(cfg(data, max_epochs=1), run)
    blob, record = (run / "checkpoint.pt").read_bytes(), (run / "metrics.json").read_bytes()
    (run / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    (run / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"run/checkpoint\.pt: cannot be read as a checkpoint \(\w+Error: .*partial copy"):
        train_idrec(cfg(data, max_epochs=1), run, replace_stale=True)
    assert (run / "checkpoint.pt").read_bytes() == blob[: len(blob) // 2]
    with pytest.raises(ValueError, match=r"run/model\.pt: not a train-laser run's model\.pt \(it has no 'trainable'\)"):
        scaffold.load_torch(run / "model.pt", "a train-laser run's model.pt", keys=("trainable",))
    (run / "model.pt").write_bytes(b"")
    (run / "metrics.json").write_bytes(record)
    with pytest.raises(ValueError, match=r"run/model\.pt: cannot be read as a train-idrec run's model\.pt"):
        train_idrec(cfg(data, init_from=str(run)), tmp_path / "down")


def test_a_folder_replacement_interrupted_between_its_renames_puts_the_previous_version_back(tmp_path, monkeypatch):
    """atomic_dir moves the old folder aside, then the new one in: a failure between the two (an interrupt, a second
    writer) removed both, leaving nothing at the path (under `data prepare --force`, maybe the user's own folder)."""
    from laser_repro import io

    target = tmp_path / "prepared"
    target.mkdir()
    (target / "stats.json").write_text("previous")
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", second_fails)
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_dir(target) as tmp:
            (tmp / "stats.json").write_text("new")
    monkeypatch.setattr(io.os, "replace", real)
    assert (target / "stats.json").read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]
    # a SIGKILL there runs no `finally`: the previous version stays aside, and the next call puts it back first
    os.replace(target, tmp_path / ".prepared.abcd1234.old")
    other = tmp_path / ".prepared.v2.abcd1234.old"  # the set-aside version of a data set named prepared.v2
    other.mkdir()
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target):
            raise RuntimeError("this write fails too")
    assert (target / "stats.json").read_text() == "previous" and other.is_dir()  # another data set's is not taken
    assert sorted(p.name for p in tmp_path.iterdir()) == [".prepared.v2.abcd1234.old", "prepared"]


def test_new_content_reaches_the_disk_before_its_rename(tmp_path, monkeypatch):
    """Nothing was flushed before the atomic renames: after a power loss (or a node crash on a cluster file system)
    the rename could be on disk and the content not, an empty metrics.json or checkpoint in place of the old one.
    Every writer (file, folder, download) now syncs the new content, renames, then syncs the folder's entry."""
    from laser_repro.data import download
    from laser_repro.io import atomic_dir, write_text

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", str(a), str(b))), real_replace(a, b))[1])
    write_text(tmp_path / "metrics.json", "{}")
    (tmp, final), = [e[1:] for e in events if e[0] == "rename"]
    assert final == str(tmp_path / "metrics.json")
    assert events == [("sync", tmp), ("rename", tmp, final), ("sync", str(tmp_path))]
    events.clear()
    with atomic_dir(tmp_path / "prepared") as folder:  # a prepared data set: every file, then the folder
        (folder / "sub").mkdir()
        (folder / "a.json").write_text("a")
        (folder / "sub" / "b.npz").write_text("b")
    synced_before = {e[1] for e in events[: [e[0] for e in events].index("rename")] if e[0] == "sync"}
    assert {f"{folder}/a.json", f"{folder}/sub/b.npz", f"{folder}/sub", str(folder)} <= synced_before
    assert events[-2:] == [("rename", str(folder), str(tmp_path / "prepared")), ("sync", str(tmp_path))]
    events.clear()
    (tmp_path / "x.gz.part").write_bytes(b"data")
    download._publish(tmp_path / "x.gz.part", tmp_path / "x.gz")
    assert events == [("sync", str(tmp_path / "x.gz.part")), ("rename", str(tmp_path / "x.gz.part"),
                                                               str(tmp_path / "x.gz")), ("sync", str(tmp_path))]
    # a folder the writer may not open (a shared drop folder without read permission): the rename happened, and the
    # write succeeds; an error of the disk itself while syncing the new file fails it before the rename
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a: (_ for _ in ()).throw(PermissionError(13, "denied"))
                        if flags & os.O_DIRECTORY else real_open(path, flags, *a))
    write_text(tmp_path / "metrics.json", "new")
    assert (tmp_path / "metrics.json").read_text() == "new"
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(OSError, match="Input/output error"):
        write_text(tmp_path / "metrics.json", "newer")
    assert (tmp_path / "metrics.json").read_text() == "new" and not list(tmp_path.glob(".metrics.json.*"))


def test_a_bit_identical_retraining_keeps_the_model_digest(data, tmp_path):
    """model.pt is the same file for the same weights: a downstream run's fingerprint of it survives rebuilding
    the upstream run (the archive inside model.pt was once named after a random temporary file, so every save
    had another digest and results computed from an identical retraining were judged stale)."""
    first, second = tmp_path / "a", tmp_path / "b"
    train_idrec(cfg(data, seed=0), first)
    train_idrec(cfg(data, seed=0), second)
    assert (first / "model.pt").read_bytes() == (second / "model.pt").read_bytes()
    assert scaffold.file_digest(first / "model.pt") == scaffold.file_digest(second / "model.pt")


def test_runs_without_other_inputs_keep_their_resume_hash(data, tmp_path):
    """Declaring inputs adds nothing to a run that names none: its resume hash is the hash of the
    config and the data fingerprint alone (what every earlier run recorded)."""
    rec = train_idrec(cfg(data), tmp_path / "plain")
    assert "input_fingerprints" not in rec["config"]
    from laser_repro.idrec.trainer import resolved_config

    expected = {**resolved_config(scaffold.validated(cfg(data))), "data_fingerprint": data_fingerprint(data)}
    # keys added after runs existed (ZESRec's pre-training) are left out at their no-op defaults: the runs made
    # before them keep their hashes
    assert set(IDRecRunConfig.HASH_NEUTRAL) == {"pretrain_datasets", "pretrain_epochs"}
    assert not set(IDRecRunConfig.HASH_NEUTRAL) & set(rec["config"])
    before = {k: v for k, v in expected.items() if k not in IDRecRunConfig.HASH_NEUTRAL}
    assert rec["resume_hash"] == scaffold.resume_hash(before, IDRecRunConfig.EXECUTION_KEYS)
    assert rec["resume_hash"] != scaffold.resume_hash(expected, IDRecRunConfig.EXECUTION_KEYS)


def test_replacing_stale_results_sets_aside_their_model_and_ranks(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = train_idrec(cfg(data, seed=0), run)
    # killed between the moves: the stale record stays (set aside next time), never its model or ranks alone
    real_replace, calls = os.replace, []

    def dies_second(src, dst):
        calls.append(Path(src).name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(scaffold.os, "replace", dies_second)
    with pytest.raises(KeyboardInterrupt):
        scaffold.RunFolder(run, {"seed": 5}, (), data_fingerprint(data), replace_stale=True).finished()
    monkeypatch.setattr(scaffold.os, "replace", real_replace)
    assert calls == ["model.pt", "ranks.npz"] and (run / "metrics.json").exists() and (run / "ranks.npz").exists()
    # the same config next: its record stands, and the model moved before the kill comes back (it read as finished
    # with no model.pt)
    model = first["resume_hash"][:16]
    assert (run / "stale" / model / "model.pt").exists() and not (run / "model.pt").exists()
    assert train_idrec(cfg(data, seed=0), run) == first and (run / "model.pt").exists()
    folder = scaffold.RunFolder(run, {"seed": 5}, (), data_fingerprint(data), replace_stale=True)
    assert folder.finished() is None  # another config: stale
    assert not any((run / name).exists() for name in ("metrics.json", "model.pt", "ranks.npz"))
    aside = run / "stale" / first["resume_hash"][:16]
    assert sorted(p.name for p in aside.iterdir()) == ["metrics.json", "model.pt", "ranks.npz"]


def test_input_fingerprints_of_files_runs_and_data_sets(data, tmp_path):
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass
    class Reads:
        INPUT_RUNS: ClassVar[tuple[str, ...]] = ("run",)
        INPUT_FILES: ClassVar[tuple[str, ...]] = ("file",)
        INPUT_DATASETS: ClassVar[tuple[str, ...]] = ("sets",)
        run: str | None = None
        file: str | None = None
        sets: tuple = ()

    assert scaffold.input_fingerprints(Reads()) == {}  # nothing named: nothing added (old hashes hold)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"weights")
    (tmp_path / "k.json").write_text('{"a": 1}')
    reads = Reads(run=str(tmp_path / "run"), file=str(tmp_path / "k.json"), sets=(str(data), str(tmp_path / "none")))
    fp = scaffold.input_fingerprints(reads)
    assert fp == {"run": hashlib.sha256(b"weights").hexdigest()[:16],
                  "file": hashlib.sha256(b'{"a": 1}').hexdigest()[:16],
                  "sets[0]": data_fingerprint(data)}  # a missing data set is left to the trainer
    (tmp_path / "run" / "model.pt").write_bytes(b"retrained")
    (tmp_path / "k.json").write_text('{"a": 2}')
    fp2 = scaffold.input_fingerprints(reads)
    assert fp2["run"] != fp["run"] and fp2["file"] != fp["file"]


def test_encoded_text_caches_are_keyed_by_their_inputs(tmp_path, monkeypatch):
    """A run folder's text-feature cache is reused for the same texts and encoder, and recomputed
    (never reused) for other texts, another encoder or another pooling."""
    from laser_repro.idrec import text_features as tf

    calls = []

    def fake_encode(texts, encoder, batch_size, device, pooling=None, max_tokens=tf.MAX_TOKENS):
        calls.append((tuple(texts), encoder, pooling, max_tokens))
        return np.asarray([[len(t), len(encoder)] for t in texts], dtype=np.float32)

    monkeypatch.setattr(tf, "encode_texts", fake_encode)
    path = tmp_path / "text_features.npz"
    a = tf.encode_cached(path, ["pen", "ink"], "minilm", 8, "cpu")
    assert tf.encode_cached(path, ["pen", "ink"], "minilm", 8, "cpu").tolist() == a.tolist()
    assert len(calls) == 1  # reused
    tf.encode_cached(path, ["pen", "paper"], "minilm", 8, "cpu")
    b = tf.encode_cached(path, ["pen", "paper"], "local:/bert", 8, "cpu")
    tf.encode_cached(path, ["pen", "paper"], "local:/bert", 8, "cpu", pooling="mean")
    assert len(calls) == 4 and b.tolist() == [[3, 11], [5, 11]]
    tf.encode_cached(path, ["pen", "paper"], "local:/bert", 8, "cpu", pooling="mean", max_tokens=512)  # KAR's limit
    assert len(calls) == 5 and calls[-1][-1] == 512
    # a shared folder (feature_cache): the second run's folder gets its copy without encoding; other texts encode
    shared = tmp_path / "shared"
    first = tf.encode_cached(tmp_path / "run1" / "k.npz", ["pen", "ink"], "minilm", 8, "cpu", shared=shared)
    again = tf.encode_cached(tmp_path / "run2" / "k.npz", ["pen", "ink"], "minilm", 8, "cpu", shared=shared)
    assert len(calls) == 6 and again.tolist() == first.tolist() and (tmp_path / "run2" / "k.npz").exists()
    assert len(list(shared.glob("*.npz"))) == 1
    tf.encode_cached(tmp_path / "run3" / "k.npz", ["pen"], "minilm", 8, "cpu", shared=shared)
    assert len(calls) == 7 and len(list(shared.glob("*.npz"))) == 2
    # another model put at the same local:PATH encodes again (once the same key: its stale vectors were reused)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"hidden_size": 4}')
    (bert / "model.safetensors").write_bytes(b"w" * 10)
    enc = f"local:{bert}"
    tf.encode_cached(tmp_path / "run4" / "k.npz", ["pen"], enc, 8, "cpu", shared=shared)
    tf.encode_cached(tmp_path / "run5" / "k.npz", ["pen"], enc, 8, "cpu", shared=shared)
    assert len(calls) == 8
    (bert / "config.json").write_text('{"hidden_size": 8}')
    tf.encode_cached(tmp_path / "run5" / "k.npz", ["pen"], enc, 8, "cpu", shared=shared)
    (bert / "model.safetensors").write_bytes(b"w" * 11)
    tf.encode_cached(tmp_path / "run5" / "k.npz", ["pen"], enc, 8, "cpu", shared=shared)
    assert len(calls) == 10
    # an LLM encoder's vectors depend on its numerics: bf16 weights on CUDA, fp32 (or autocast) on CPU
    assert tf.encoding_key(["pen"], "smollm2", None, device="cpu") != tf.encoding_key(["pen"], "smollm2", None,
                                                                                       device="cuda")
    assert tf.encoding_key(["pen"], "minilm", None, device="cpu") == tf.encoding_key(["pen"], "minilm", None,
                                                                                     device="cuda")


# ---------------------------------------------------------------- artifacts outside the workflow


def test_artifacts_built_from_a_config_show_stale_results_as_gaps(tmp_path):
    """`laser-repro artifact --config` runs outside Snakemake, so nothing reran the runs a changed
    config or re-prepared data invalidated: their results are listed as stale gaps, never averaged."""
    ring(tmp_path / "data" / "pet")
    paths = {k: str(tmp_path / k) for k in ("raw", "data", "runs", "configs", "results", "figures", "logs")}
    overlay = {"paths": paths, "seeds": [0], "table2": {"datasets": ["pet"]},
               "run": {"idrec": {"max_epochs": 1, "progress": False}}}
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    (tmp_path / "lr.yaml").write_text(yaml.safe_dump({"method_run": {"sasrec": {"lr": 0.002}}}))
    from laser_repro.experiment.plan import Experiment
    from laser_repro.experiment.layout import RunKey
    from dataclasses import astuple

    files = [REPO / "config.yaml", tmp_path / "overlay.yaml"]
    exp = Experiment.from_files(files)
    key = RunKey("pet", "sasrec", "main", 0)
    train_idrec(exp.resolved(*astuple(key)), exp.run_dir(*astuple(key)))

    def table2(*more):
        out = tmp_path / "table2.md"
        assert cli_main(["artifact", "table2", *[a for f in [*files, *more] for a in ("--config", str(f))],
                         "--out", str(out)]) == 0
        return out.read_text()

    current = table2()
    assert f"`{tmp_path}/runs/pet/sasrec/main/seed~0/metrics.json`" not in current  # used, not missing
    assert exp.stale_runs([key]) == {}
    # another run config (a different lr): the result no longer answers it
    changed = Experiment.from_files([*files, tmp_path / "lr.yaml"])
    assert changed.stale_runs([key]) == {key.rel: "results of a different run config (seed 0, it had lr: 0.001 (now "
                                                  "0.002))"}  # what changed is named
    text = table2(tmp_path / "lr.yaml")
    assert (f"`{tmp_path}/runs/pet/sasrec/main/seed~0/metrics.json`: stale, results of a different run config"
            in text)
    sasrec_row = next(line for line in text.splitlines() if line.startswith("| SASRec"))
    assert sasrec_row != next(line for line in current.splitlines() if line.startswith("| SASRec"))
    assert "—" in sasrec_row
    # inside the workflow the spec carries its workflow config: the table job checks each run against it too, so a
    # run of an older config is a gap even where Snakemake's params trigger did not rerun it (was: averaged)
    from laser_repro.experiment.specs import to_json

    for config, stale in ((exp, False), (changed, True)):
        spec = config.spec("table2")
        spec.workflow = config.config
        (tmp_path / "table2.json").write_text(json.dumps(to_json(spec)))
        assert cli_main(["artifact", "table2", "--spec", str(tmp_path / "table2.json"),
                         "--out", str(tmp_path / "t2.md")]) == 0
        text = (tmp_path / "t2.md").read_text()
        assert ("metrics.json`: stale, results of a different run config" in text) is stale
        assert (next(line for line in text.splitlines() if line.startswith("| SASRec")) == sasrec_row) is stale
    # the data edited by hand: a gap with the reason (it stopped the whole artifact)
    npz = tmp_path / "data" / "pet" / "interactions.npz"
    original = npz.read_bytes()
    npz.write_bytes(original[: len(original) // 2])  # an interrupted copy
    assert "cannot be read as a prepared data set (BadZipFile" in exp.stale_runs([key])[key.rel]
    with np.load(io.BytesIO(original)) as z:
        np.savez(npz, **{**dict(z), "train_len": z["train_len"] - 1})  # a split moved by hand
    assert "changed by hand since" in exp.stale_runs([key])[key.rel]
    assert "changed by hand since" in table2().split(f"`{tmp_path}/runs/pet/sasrec/main/seed~0/metrics.json`: stale, ")[1]
    # the data re-prepared differently at the same path: stale under the original config too
    shutil.rmtree(tmp_path / "data" / "pet")
    ring(tmp_path / "data" / "pet", shift=3)
    assert "the data set now has" in exp.stale_runs([key])[key.rel]
    # a data set that is not prepared here cannot be checked: not used either
    shutil.rmtree(tmp_path / "data" / "pet")
    assert "is not prepared here" in exp.stale_runs([key])[key.rel]


def test_an_id_model_laser_does_not_read_is_not_fingerprinted(tmp_path):
    """w/o M-Former and w/o prefix name the workflow's ID-model run but never read it: a retrained ID model leaves
    them valid; with the M-Former it is an input (its retraining makes the run stale)."""
    from laser_repro.laser.config import BiTuningConfig
    from laser_repro.laser.tiny import tiny_config

    (tmp_path / "idrec").mkdir()
    (tmp_path / "idrec" / "model.pt").write_bytes(b"bert4rec")
    main = tiny_config("unused", idrec_run=str(tmp_path / "idrec"))
    assert main.unread_inputs() == () and set(scaffold.input_fingerprints(main)) == {"idrec_run"}
    for prefix in ("learnable", "none"):
        cfg = tiny_config("unused", idrec_run=str(tmp_path / "idrec"), bituning=BiTuningConfig(prefix=prefix))
        assert cfg.unread_inputs() == ("idrec_run",) and scaffold.input_fingerprints(cfg) == {}


def test_out_must_be_a_run_folder_not_a_file_or_a_data_set(data, tmp_path, caplog):
    """`--out` at a prepared data set trained into it (a later `data prepare` then refused the folder's "foreign
    files"); at a file it failed with a bare "[Errno 17] File exists"."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"dataset": str(data), "model": "sasrec", "progress": False,
                                      "model_config": SMALL, "max_epochs": 1}))
    before = sorted(p.name for p in Path(data).iterdir())
    assert cli_main(["train-idrec", "--config", str(config), "--out", str(data)]) == 1
    assert cli_main(["train-idrec", "--config", str(config), "--out", str(Path(data) / "stats.json")]) == 1
    assert f"--out {data}: a prepared data set's folder; give the run a folder of its own" in caplog.text
    assert f"--out {data}/stats.json: a file; expected a run folder" in caplog.text
    assert sorted(p.name for p in Path(data).iterdir()) == before  # nothing written there


def test_an_overlay_alone_is_told_to_go_on_top_of_the_base():
    """`artifact table2 --config workflow/default.yaml` said only "fig4.grid.K: 'key' is a required property"."""
    from laser_repro.experiment.config import WorkflowConfigError, load

    overlay = REPO / "workflow" / "default.yaml"
    with pytest.raises(WorkflowConfigError, match=rf"\(is {re.escape(str(overlay))} an overlay\? it goes on top of "
                                                  rf"the base config: --config config.yaml --config "):
        load([overlay])
    assert load([REPO / "config.yaml", overlay])["seeds"] == [0]  # with its base it is a whole config
