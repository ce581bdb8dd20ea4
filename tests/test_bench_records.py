"""benchmarks/bench_laser_scientific.py keeps what it computed: committed records of finished runs, and the
previous report's lines for runs that are neither here nor recorded (never a silent gap)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

OLD = """# Laser on the real Scientific set (first real-data result)

| system | backbone | training users | train rows | valid users | test users | best (phase, epoch) | test R@10 | test N@10 | test MRR | wall (min) |
|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|
| Laser w/o prefix | minilm | 1000 (seeded) | 3107 | 1000 | 11039 | 2, 0 | 9.42 | 5.24 | 4.39 | 28 |

| a vs b | n | a vs b (x100) | t | p | verdict |
|---|---:|---|---:|---:|---|
| main vs no-prefix | 11039 | 3.86 vs 5.24 | -9.61 | 8.8e-22 | b better |

**no-prefix** (minilm; curve test users 500)

| phase | epoch | loss | valid N@10 | curve-test N@10 |
|---|---:|---:|---:|---:|
| 1 | 0 | 8.247 | 4.98 | 4.58 |

**smollm2** (smollm2; curve test users 250)

| run | item cosine mean (std) | tau | logit spread | token norm | prefix norm | suffix norm |
|---|---:|---:|---:|---:|---:|---:|
| no-prefix | 0.632 (0.075) | 0.05 | 1.50 | 1.131 | — | 1.368 |

<!-- analysis: hand-written, kept when the tables above are regenerated -->
Hand-written text.
"""


def _script(monkeypatch, name):
    """The benchmark script ``benchmarks/<name>.py`` as a module."""
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import records (and bench_laser_cpu)
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load(monkeypatch, tmp_path, name="bench_laser_scientific"):
    mod = _script(monkeypatch, name)
    monkeypatch.setattr(mod, "REPORT", tmp_path / "report.md")
    monkeypatch.setattr(mod, "RECORDS", tmp_path / "records")
    return mod


def test_kept_lines_take_one_row_or_one_curve_block(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    assert mod.kept_lines(OLD, "| Laser w/o prefix | minilm |") == [OLD.splitlines()[4]]
    block = mod.kept_lines(OLD, "**no-prefix** (", block=True)
    assert block[0].startswith("**no-prefix**") and block[-1] == "| 1 | 0 | 8.247 | 4.98 | 4.58 |" and len(block) == 5
    assert mod.kept_lines(OLD, "| Laser w/o prefix | smollm2 |") == []


def test_a_record_is_used_when_the_run_folder_is_gone(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    run, record = tmp_path / "runs" / "x", tmp_path / "records" / "x"
    assert mod.source(run, record) is None
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"test": {"ndcg@10": 0.05}}))
    ranks = {"test_users": np.arange(11039), "test_targets": np.arange(11039) % 5327, "test_ranks": np.arange(11039) % 97}
    np.savez(run / "ranks.npz", **ranks)
    mod.keep_record(run, record)
    with np.load(record / "ranks.npz") as z:
        assert sorted(z.files) == sorted(ranks) and all(np.array_equal(z[k], v) and z[k].dtype == v.dtype
                                                        for k, v in ranks.items())
    assert (record / "ranks.npz").stat().st_size < (run / "ranks.npz").stat().st_size / 3
    assert json.loads((record / "metrics.json").read_text()) == {"test": {"ndcg@10": 0.05}}
    assert mod.source(run, record) == run  # the run folder, where present, wins
    for f in run.iterdir():
        f.unlink()
    assert mod.source(run, record) == record


def test_report_keeps_the_previous_lines_of_runs_it_cannot_find_and_names_them(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    mod.REPORT.write_text(OLD)
    args = argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs")
    text = mod.report(args)
    assert "| Laser w/o prefix | minilm | 1000 (seeded) | 3107 | 1000 | 11039 | 2, 0 | 9.42 | 5.24 | 4.39 | 28 |" in text
    assert "| main vs no-prefix | 11039 | 3.86 vs 5.24 | -9.61 | 8.8e-22 | b better |" in text
    assert "| 1 | 0 | 8.247 | 4.98 | 4.58 |" in text and "| no-prefix | 0.632 (0.075) |" in text
    assert "| Laser w/o prefix | smollm2 | not run |" in text  # never run, never reported: a visible gap
    assert "| smollm2-no-prefix vs bert4rec | — | — | — | — | not run |" in text
    kept = next(line for line in text.splitlines() if line.startswith("Kept from the previous version"))
    assert "no-prefix" in kept and "main" in kept and "smollm2-no-prefix" not in kept
    assert text.endswith("Hand-written text.\n")
    mod.REPORT.write_text(text)
    assert mod.report(args) == text  # idempotent: its own 'not run' rows are never kept as results


def _laser_record(rec: Path, ndcg: float = 0.05, **config) -> None:
    """A finished Laser run's record: 3 test users, N@10 ``ndcg``."""
    rec.mkdir(parents=True)
    test = {"n": 3, "recall@10": 0.1, "ndcg@10": ndcg, "mrr": 0.04}
    (rec / "metrics.json").write_text(json.dumps({
        "config": {"max_train_users": 1000, **config}, "train_rows": 3107, "valid": {"n": 1000}, "test": test,
        "best_phase": 2, "best_epoch": 0, "wall_time_s": 600.0, "untrained_valid": {"ndcg@10": 0.01},
        "history": [{"phase": 1, "epoch": 0, "loss": 8.4, "valid": {"ndcg@10": 0.02}}]}))
    np.savez(rec / "ranks.npz", test_users=np.arange(3), test_targets=np.arange(3), test_ranks=np.array([0, 5, 20]))


def test_a_test_against_a_run_without_ranks_names_the_lost_ranks_not_a_missing_run(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    mod.REPORT.write_text(OLD)  # no-prefix (minilm) reported there, before records were kept
    _laser_record(tmp_path / "records" / "main")
    text = mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs"))
    assert "| Laser (M-Former prefix + suffix) | minilm | 1000 (seeded) | 3107 | 1000 | 3 | 2, 0 | 10.00 |" in text
    # the old main-vs-no-prefix test is not kept (main is new), and no-prefix did run: its ranks are what is missing
    assert ("| main vs no-prefix | — | — | — | — | no per-user ranks of no-prefix (run before records were kept) |"
            in text)
    assert "| main vs bert4rec | — | — | — | — | not run |" in text  # bert4rec is nowhere: a plain gap
    mod.REPORT.write_text(text)
    assert mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs")) == text
    # the same no-prefix run recorded (test N@10 5.24 as the old row shows): the old test of main against it stays
    mod.REPORT.write_text(OLD)
    _laser_record(tmp_path / "records" / "no-prefix", ndcg=0.0524)
    (tmp_path / "records" / "main" / "metrics.json").unlink()
    (tmp_path / "records" / "main" / "ranks.npz").unlink()
    same = mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs"))
    assert "| main vs no-prefix | 11039 | 3.86 vs 5.24 | -9.61 | 8.8e-22 | b better |" in same


def test_report_keeps_the_previous_results_while_a_rerun_is_unfinished(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    mod.REPORT.write_text(OLD)
    (tmp_path / "runs" / "no-prefix").mkdir(parents=True)
    (tmp_path / "runs" / "no-prefix" / "checkpoint.pt").write_bytes(b"")  # a rerun in progress
    text = mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs"))
    assert "| Laser w/o prefix | minilm | 1000 (seeded) | 3107 |" in text and "UNFINISHED" not in text
    assert "Reruns in progress (their previous results stay until they finish): no-prefix." in text


def test_recformer_report_without_run_or_record_is_left_as_it_is(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path, "bench_recformer_scientific")
    args = argparse.Namespace(run=tmp_path / "runs" / "seed~0")
    assert mod.report(args).endswith("Not run yet.\n")  # nothing before: a visible gap
    mod.REPORT.write_text(OLD)
    assert mod.report(args) == OLD  # never replaced by a gap


def test_recformer_report_reads_the_record_when_the_run_folder_is_gone(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path, "bench_recformer_scientific")
    run = tmp_path / "runs" / "seed~0"
    run.mkdir(parents=True)
    metrics = {"config": {"encoder": "minilm", "max_tokens": 256, "lr": 5e-5, "batch_size": 16}, "train_users": 800,
               "valid": {"n": 400}, "test": {"n": 11039, "recall@10": 0.0812, "ndcg@10": 0.0456, "mrr": 0.0401},
               "wall_time_s": 1500.0, "device": "cpu", "best_stage": 2, "best_epoch": 0,
               "history": [{"stage": 1, "epoch": 0, "loss": 3.2, "valid": {"ndcg@10": 0.04}}]}
    (run / "metrics.json").write_text(json.dumps(metrics))
    np.savez(run / "ranks.npz", test_users=np.arange(3), test_targets=np.arange(3), test_ranks=np.arange(3))
    first = mod.report(args := argparse.Namespace(run=run))
    assert "| ours (stage 2, epoch 0) | 8.12 | 4.56 | 4.01 |" in first
    for f in run.iterdir():
        f.unlink()
    assert mod.report(args) == first and (tmp_path / "records" / "seed~0" / "ranks.npz").exists()


def test_finished_runs_prefer_folders_and_fall_back_to_records(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import records

    runs, recs = tmp_path / "runs", tmp_path / "records"
    for seed in (0, 1):
        run = runs / f"seed~{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"seed": seed}))
        np.savez(run / "ranks.npz", test_ranks=np.arange(4))
    (runs / "seed~1" / "protocols.json").write_text("{}")
    (runs / "seed~2").mkdir()  # unfinished: no metrics.json
    records.sync(runs, recs, extra=("protocols.json",))
    assert sorted(p.name for p in recs.iterdir()) == ["seed~0", "seed~1"]
    assert (recs / "seed~1" / "protocols.json").exists() and not (recs / "seed~0" / "protocols.json").exists()
    (runs / "seed~0" / "metrics.json").unlink()
    assert records.finished(runs, recs) == [recs / "seed~0", runs / "seed~1"]


def test_lost_rows_names_what_a_rewrite_would_blank_or_drop(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from records import lost_rows

    old = "| sasrec | ndcg@10 | 8.03 | 9.20 (n=3) |\n| fdsa | ndcg@10 | 7.16 | not run | — |\n| kar | 0 | 12 |"
    new = "| sasrec | ndcg@10 | 8.03 | not run | — |\n| fdsa | ndcg@10 | 7.16 | 6.9 (n=1) |"
    assert lost_rows(old, new, ["| sasrec |", "| fdsa |", "| kar |", "| zesrec |"]) == ["| sasrec |", "| kar |"]
    assert lost_rows(old, old, ["| sasrec |", "| kar |"]) == []
    three = "| fdsa | ndcg@10 | 7.16 | 10.02 (n=3) |\n" + "".join(f"| fdsa | {s} | 12 | 30 |\n" for s in range(3))
    one = "| fdsa | ndcg@10 | 7.16 | 9.90 (n=1) |\n| fdsa | 0 | 12 | 30 |\n"
    assert lost_rows(three, one, ["| fdsa |"]) == ["| fdsa |"]  # two seeds lost
    unfinished = "| fdsa | ndcg@10 | 7.16 | not run |\n| fdsa | 1 (UNFINISHED, best valid ndcg@10 0.09) | 4 |\n"
    assert lost_rows(three, unfinished, ["| fdsa |"]) == ["| fdsa |"]  # a run in progress is no result
    # in headed tables a row is matched by its identity columns (model, metric, seed ...), not only counted
    head = "| Model | Seed | epochs | wall (s) |\n|---|---:|---:|---:|\n"
    seeds = head + "".join(f"| fdsa | {s} | 12 | 30 |\n" for s in (0, 1, 2))
    swapped = head + "".join(f"| fdsa | {s} | 12 | 30 |\n" for s in (0, 1, 3))
    assert lost_rows(seeds, swapped, ["| fdsa |"]) == ["| fdsa |"]  # seed 2 lost, seed 3 gained: as many rows
    rerun = head + "".join(f"| fdsa | {s} | 14 | 41 |\n" for s in (2, 0, 1))
    assert lost_rows(seeds, rerun, ["| fdsa |"]) == []  # new values, the same seeds
    main = "| Model | Metric | Paper | Ours |\n|---|---|---:|---|\n| fdsa | ndcg@10 | 7.16 | 6.90 (n=3) |\n"
    assert lost_rows(main, main.replace("ndcg@10 | 7.16 | 6.90", "mrr | 7.0 | 6.5"), ["| fdsa |"]) == ["| fdsa |"]
    assert lost_rows(main, main.replace("6.90 (n=3)", "7.01 (n=3)"), ["| fdsa |"]) == []


def test_write_report_refuses_to_blank_a_result(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    from records import write_report

    path = tmp_path / "r.md"
    path.write_text("| kar | 13.07 |\n")
    with pytest.raises(SystemExit, match="results for kar"):
        write_report(path, "| kar | not run |\n", ["kar", "lrurec"], False, "no runs here")
    assert path.read_text() == "| kar | 13.07 |\n"
    write_report(path, "| kar | 13.10 |\n| lrurec | 14.2 |\n", ["kar", "lrurec"], False, "")
    write_report(path, "| kar | not run |\n", ["kar"], True, "")  # --allow-gaps
    assert path.read_text() == "| kar | not run |\n"


def test_llm_baselines_report_reads_records_when_the_run_folders_are_gone(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path, "bench_llm_baselines_scientific")
    rec = tmp_path / "records" / "kar" / "seed~0"
    rec.mkdir(parents=True)
    (rec / "metrics.json").write_text(json.dumps({
        "seed": 0, "test": {"n": 11039, "recall@10": 0.1307, "ndcg@10": 0.0938, "mrr": 0.0872},
        "config": {"num_threads": 1}, "wall_time_s": 600.0}))
    args = argparse.Namespace(runs=tmp_path / "runs", report=tmp_path / "report.md", data=tmp_path / "data")
    text = mod.report(args)
    assert "| kar | template knowledge, MiniLM-L6 encoder | 1 | 11039 | 13.07 | 9.38 | 8.72 |" in text
    assert "| lrurec | — (ID model) | 0 | — | not run | not run | not run |" in text


def test_llm_baselines_report_shows_the_popularity_floor_on_each_runs_users(monkeypatch, tmp_path):
    """Hand case: training counts item0 3, item1 1, items 2-3 0; test targets 0, 1, 3, 2 rank 1, 2, 4, 4 (ties
    pessimistic): Recall@10 1, NDCG@10 (1 + 1/log2 3 + 2/log2 5) / 4, MRR (1 + 1/2 + 1/4 + 1/4) / 4."""
    from laser_repro.data.dataset import from_sequences, save_dataset

    mod = _load(monkeypatch, tmp_path, "bench_llm_baselines_scientific")
    items = [{"id": w, "title": w, "brand": "", "category": ""} for w in "abcd"]
    data = save_dataset(from_sequences("pop", "synthetic", items, list("wxyz"),
                                       [[0, 1, 0], [0, 2, 1], [0, 3, 3], [1, 0, 2]]), tmp_path / "data")
    for step, cap in (("kar", None), ("llamarec", 4)):
        rec = tmp_path / "records" / step / "seed~0"
        rec.mkdir(parents=True)
        (rec / "metrics.json").write_text(json.dumps({
            "seed": 0, "test": {"n": 4, "recall@10": 0.5, "ndcg@10": 0.4, "mrr": 0.3},
            "config": {"num_threads": 1, "max_eval_users": cap}, "wall_time_s": 60.0}))
    text = mod.report(argparse.Namespace(runs=tmp_path / "runs", report=tmp_path / "report.md", data=data))
    ndcg = 100 * (1 + 1 / math.log2(3) + 2 / math.log2(5)) / 4
    assert f"| all | kar seed 0 | 100.00 | {ndcg:.2f} | 50.00 |" in text
    assert f"| 4 seeded (seed 0) | llamarec seed 0 | 100.00 | {ndcg:.2f} | 50.00 |" in text


PREVIOUS_CPU = """# Laser CPU speed

Written by `benchmarks/bench_laser_cpu.py` on 2026-12-04. Machine: Intel(R) Xeon(R), amx_bf16, avx512_bf16 (x86_64), 2 cores.

| backbone | bare / bf16 peak |
|---|---:|
| minilm | 21% |

## fp32 vs bf16 autocast on a short real run

same model: met.

<!-- smoke:start -->
smoke run
<!-- smoke:end -->
"""


def test_laser_cpu_rewrite_keeps_a_run_from_another_cpu(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from bench_laser_cpu import MACHINE_END, MACHINES, kept_sections

    kept = kept_sections(PREVIOUS_CPU, "AMD EPYC, avx512_bf16")
    assert kept.index(MACHINES) < kept.index("### An earlier run") < kept.index("| minilm | 21% |") < kept.index(
        "#### fp32 vs bf16 autocast") < kept.index(MACHINE_END) < kept.index("<!-- smoke:start -->\nsmoke run")
    assert "Machine: Intel(R) Xeon(R), amx_bf16" in kept
    same = kept_sections(PREVIOUS_CPU, "Intel(R) Xeon(R), amx_bf16, avx512_bf16")
    assert same == PREVIOUS_CPU[PREVIOUS_CPU.index("<!-- smoke:start -->"):]  # same CPU: its figures are replaced
    for less in (("minilm", "smollm2"), ("smollm2", "fp32 vs bf16 autocast on a short real run")):  # ... unless the
        partial = kept_sections(PREVIOUS_CPU, "Intel(R) Xeon(R), amx_bf16, avx512_bf16", less)  # rerun lacks some
        assert "### An earlier run" in partial and "| minilm | 21% |" in partial and "same model: met." in partial
    again = kept_sections("# Laser CPU speed\n\nWritten by x. Machine: Other CPU (x86_64).\n\n| t |\n\n" + kept, "AMD EPYC, avx512_bf16")
    assert again.count("### An earlier run") == 2 and again.count(MACHINES) == 1  # a third CPU: both kept
    assert kept_sections("", "AMD EPYC, avx512_bf16") == ""


def test_diagnostics_are_computed_once_per_result(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    run, record = tmp_path / "runs" / "v", tmp_path / "records" / "v"
    run.mkdir(parents=True)
    shown = {"resume_hash": "h1", "finished_at": "2026-12-01T00:00:00+00:00"}
    (run / "metrics.json").write_text(json.dumps(shown))
    (run / "checkpoint.pt").write_bytes(b"")
    calls = []
    monkeypatch.setattr(mod, "diagnose", lambda folder: calls.append(folder) or {"item_cos_mean": 0.5 * len(calls)})
    assert mod.diagnostics(run, record, shown) == {"item_cos_mean": 0.5} and calls == [run]
    assert mod.diagnostics(run, record, shown) == {"item_cos_mean": 0.5} and calls == [run]  # cached in the record
    os.utime(record / "diagnostics.json", (time.time() - 99, time.time() - 99))  # file times do not matter ...
    assert mod.diagnostics(run, record, shown) == {"item_cos_mean": 0.5} and calls == [run]
    rerun = {"resume_hash": "h1", "finished_at": "2026-12-02T00:00:00+00:00"}  # ... another result does
    assert mod.diagnostics(run, record, rerun) == {"item_cos_mean": 1.0} and calls == [run, run]
    # without the run folder, a record's diagnostics of another result than the one shown are not shown
    assert mod.diagnostics(None, record, rerun) == {"item_cos_mean": 1.0}
    assert mod.diagnostics(None, record, shown) is None and calls == [run, run]
    # diagnostics from before the key: kept unless the run folder's checkpoint is newer
    (record / "diagnostics.json").write_text(json.dumps({"item_cos_mean": 0.25}))
    assert mod.diagnostics(None, record, shown) == {"item_cos_mean": 0.25}
    assert mod.diagnostics(run, record, shown) == {"item_cos_mean": 0.25} and calls == [run, run]
    os.utime(run / "checkpoint.pt", (time.time() + 10, time.time() + 10))
    assert mod.diagnostics(run, record, shown) == {"item_cos_mean": 1.5} and calls == [run, run, run]


def test_keep_record_skips_an_unfinished_run(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")  # no ranks.npz yet
    assert mod.keep_record(run, tmp_path / "records" / "x") is False and not (tmp_path / "records").exists()


def test_a_record_names_no_folder_of_this_machine(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    import records

    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    here = records.REPO_PREFIX + "benchmarks/out/data/scientific"
    (run / "metrics.json").write_text(json.dumps({"config": {"dataset": here, "seeds": [here], "lr": 0.001},
                                                  "elsewhere": "/data/x",
                                                  "shared": records.WORKSPACE_PREFIX + "shared/data/scientific"}))
    np.savez(run / "ranks.npz", test_ranks=np.arange(3))
    assert mod.keep_record(run, tmp_path / "records" / "x")
    assert json.loads((tmp_path / "records" / "x" / "metrics.json").read_text()) == {
        "config": {"dataset": "benchmarks/out/data/scientific", "seeds": ["benchmarks/out/data/scientific"],
                   "lr": 0.001}, "elsewhere": "/data/x", "shared": "../shared/data/scientific"}


def test_flops_report_keeps_the_epochs_to_early_stopping_without_the_run_folders(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path, "bench_idrec_flops")
    row = {"model": "zesrec", "batches": 22, "train_tflop": 1.8, "eval_tflop": 0.2, "s_per_step": 1.0, "eval_s": 2.0,
           "epochs": []}
    peaks = {"fp32": 200.0, "bf16": 400.0}
    blank = mod.report([row], peaks, 2, None)
    assert "| zesrec | 22 | 1.800 | 0.200 | — | — | — | — | 1.00 | 24.0 | — | 83 |" in blank  # nothing to go on
    old = "| zesrec | 22 | 1.816 | 0.178 | 89 (78, 92, 98) | 178 | 13.4 **(> 10)** | 6.1 | 0.98 | 22.9 | 34.1 | 87 |\n"
    assert mod.old_epochs(old, "zesrec") == [78, 92, 98] and mod.old_epochs(old, "fdsa") == []
    # mean 89.3 epochs x 2.0 TFLOP = 179 TFLOP; at 200 GFLOP/s 14.9 min; 24 s per epoch -> 35.7 min
    assert "| zesrec | 22 | 1.800 | 0.200 | 89 (78, 92, 98) | 179 | 14.9 **(> 10)** | 7.4 | 1.00 | 24.0 | 35.7 | 83 |" in (
        mod.report([row], peaks, 2, old))
    rec = tmp_path / "records" / "zesrec" / "seed~0"  # a committed record wins over the old report
    rec.mkdir(parents=True)
    (rec / "metrics.json").write_text(json.dumps({"epochs_run": 40}))
    assert mod.epochs_to_stop(tmp_path / "runs" / "zesrec", tmp_path / "records" / "zesrec") == [40]


def test_a_result_of_a_retrained_bert4rec_input_is_stale_never_shown_or_tested(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    bert = tmp_path / "runs" / "bert4rec"
    bert.mkdir(parents=True)
    (bert / "model.pt").write_bytes(b"retrained")
    _laser_record(tmp_path / "records" / "main", input_fingerprints={"idrec_run": "0123456789abcdef"})
    _laser_record(tmp_path / "records" / "no-prefix", bituning={"prefix": "none"},  # reads no BERT4Rec: not judged
                  input_fingerprints={"idrec_run": "0123456789abcdef"})
    args = argparse.Namespace(idrec_run=bert, runs=tmp_path / "runs")
    text = mod.report(args)
    assert "| Laser (M-Former prefix + suffix) | minilm | STALE: idrec_run retrained since |" in text
    assert "| main vs no-prefix | — | — | — | — | STALE: main |" in text and "**main**" not in text
    assert "| Laser w/o prefix | minilm | 1000 (seeded) | 3107 | 1000 | 3 | 2, 0 | 10.00 |" in text
    assert "Stale (results of other data or another BERT4Rec input than this machine's; not shown, not tested): main." in text
    from laser_repro.train.scaffold import file_digest
    (tmp_path / "records" / "main" / "metrics.json").write_text(json.dumps({
        **json.loads((tmp_path / "records" / "main" / "metrics.json").read_text()),
        "config": {"max_train_users": 1000, "input_fingerprints": {"idrec_run": file_digest(bert / "model.pt")}}}))
    # its own input again: a result, tested (per-user N@10 of ranks 0, 5, 20: (1 + 1/log2(7) + 0) / 3 = 45.21%)
    assert "| main vs no-prefix | 3 | 45.21 vs 45.21 | 0.00 | 1 | no difference |" in mod.report(args)
    # a digest of the same model written by older code (records.SAME_MODEL): a rebuild, not a retraining
    records = sys.modules["records"]
    (tmp_path / "records" / "main" / "metrics.json").write_text(json.dumps({
        **json.loads((tmp_path / "records" / "main" / "metrics.json").read_text()),
        "config": {"max_train_users": 1000, "input_fingerprints": {"idrec_run": "fedcba9876543210"}}}))
    assert "STALE: idrec_run retrained since" in mod.report(args)
    monkeypatch.setitem(records.SAME_MODEL, "fedcba9876543210", file_digest(bert / "model.pt"))
    assert "| main vs no-prefix | 3 | 45.21 vs 45.21 | 0.00 | 1 | no difference |" in mod.report(args)


def test_stale_inputs_names_re_prepared_data(monkeypatch, tmp_path):
    from laser_repro.data.dataset import data_fingerprint, from_sequences, save_dataset

    stale_inputs = _load(monkeypatch, tmp_path).stale_inputs
    data = tmp_path / "data"
    items = [{"id": str(i), "title": f"item {i}", "brand": "b", "category": "c"} for i in range(4)]
    save_dataset(from_sequences("d", "test", items, ["u0", "u1"], [[1, 2, 3, 0], [2, 3, 1, 2]]), data)
    ours = data_fingerprint(data)
    assert stale_inputs({"config": {"data_fingerprint": ours}}, data) == []
    assert stale_inputs({"data_fingerprint": "ffff"}, data) == [f"data re-prepared since (fingerprint ffff -> {ours})"]
    assert stale_inputs({"data_fingerprint": "ffff"}, tmp_path / "absent") == []  # nothing here to judge by


def test_a_rerun_in_progress_next_to_its_record_is_named(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    _laser_record(tmp_path / "records" / "main")
    (tmp_path / "runs" / "main").mkdir(parents=True)
    (tmp_path / "runs" / "main" / "checkpoint.pt").write_bytes(b"")
    text = mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs"))
    assert "| Laser (M-Former prefix + suffix) | minilm | 1000 (seeded) |" in text
    assert "Reruns in progress (their previous results stay until they finish): main." in text


def test_keep_record_writes_metrics_last_and_drops_extras_the_run_no_longer_has(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    run, record = tmp_path / "run", tmp_path / "record"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"seed": 0}))
    (run / "protocols.json").write_text("{}")
    np.savez(run / "ranks.npz", test_ranks=np.arange(4))
    assert mod.keep_record(run, record, extra=("protocols.json",)) and (record / "protocols.json").exists()
    (run / "protocols.json").unlink()  # a rerun: its protocols not computed yet
    (run / "metrics.json").write_text(json.dumps({"seed": 0, "lr": 0.01}))
    order = []
    records = sys.modules["records"]
    monkeypatch.setattr(records, "write_json", lambda p, obj: (order.append((p.name, (record / "ranks.npz").stat().st_mtime_ns)),
                                                               records.write_text(p, json.dumps(obj))))
    before = (record / "ranks.npz").stat().st_mtime_ns
    time.sleep(0.01)
    assert records.keep_record(run, record, extra=("protocols.json",))
    assert not (record / "protocols.json").exists()  # the earlier run's protocols do not outlive it
    assert order and order[0][0] == "metrics.json" and order[0][1] > before  # ranks rewritten before metrics
    assert json.loads((record / "metrics.json").read_text()) == {"seed": 0, "lr": 0.01}


def test_mixed_settings_names_what_seeds_disagree_on(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from records import mixed_settings

    a, b = {"seed": 0, "lr": 1e-3, "n": 2}, {"seed": 1, "lr": 1e-3, "n": 2}
    assert mixed_settings({"seed~0": a, "seed~1": b}, ignore=("seed",)) == []
    assert mixed_settings({"seed~0": a, "seed~1": {**b, "lr": 1e-2}, "seed~2": {"seed": 2, "lr": 1e-3}},
                          ignore=("seed",)) == ["lr"]


def test_idrec_report_never_pools_seeds_of_other_settings(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path, "bench_idrec_scientific")
    monkeypatch.setattr(mod, "RECORDS", tmp_path / "records")
    for seed, lr in ((0, 1e-3), (1, 1e-3), (2, 1e-2)):
        rec = tmp_path / "records" / "sasrec" / f"seed~{seed}"
        rec.mkdir(parents=True)
        config = {"seed": seed, "lr": lr, "batch_size": 256, "patience": 10, "model_config": {}, "num_threads": seed,
                  "dataset": f"/machine{seed}/scientific"}
        (rec / "metrics.json").write_text(json.dumps({
            "seed": seed, "config": config, "test": {"recall@10": 0.14, "ndcg@10": 0.1, "mrr": 0.09},
            "best_epoch": 5, "epochs_run": 15, "train_time_s": 60.0, "wall_time_s": 70.0, "device": "cpu"}))
    args = argparse.Namespace(models=["sasrec"], runs=tmp_path / "runs", data=tmp_path / "data", protocols=False,
                              report=tmp_path / "idrec.md")
    text = mod.report(args)
    assert "| sasrec | ndcg@10 | 8.03 | MIXED settings: the seeds differ in lr; not pooled | — | — |" in text
    (tmp_path / "records" / "sasrec" / "seed~2" / "metrics.json").unlink()  # the odd seed gone: seeds 0-1 pool
    assert "| sasrec | ndcg@10 | 8.03 | 10.00 ± 0.00 (n=2) | +24.5% | **no** |" in mod.report(args)


def test_recformer_report_names_a_rerun_in_progress(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path, "bench_recformer_scientific")
    rec = tmp_path / "records" / "seed~0"
    rec.mkdir(parents=True)
    (rec / "metrics.json").write_text(json.dumps({
        "config": {"encoder": "minilm", "max_tokens": 256, "lr": 5e-5, "batch_size": 16}, "train_users": 800,
        "valid": {"n": 400}, "test": {"n": 11039, "recall@10": 0.0812, "ndcg@10": 0.0456, "mrr": 0.0401},
        "wall_time_s": 1500.0, "device": "cpu", "best_stage": 2, "best_epoch": 0, "history": []}))
    run = tmp_path / "runs" / "seed~0"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"")
    text = mod.report(argparse.Namespace(run=run))
    assert "A rerun is in progress in `seed~0`: the results below are the previous run's" in text
    assert "| ours (stage 2, epoch 0) | 8.12 | 4.56 | 4.01 |" in text


def test_an_unfinished_runs_curve_is_marked_and_never_carried_over_as_a_result(monkeypatch, tmp_path):
    import torch

    mod = _load(monkeypatch, tmp_path)
    for name in ("main", "no-mformer"):  # the learnable prefix has no router: its L_LB (0) is not shown
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        hist = [{"phase": 1, "epoch": 0, "loss": 8.4, "loss_lb": 1.25 if name == "main" else 0.0,
                 "valid": {"ndcg@10": 0.02}, "test": {"n": 500, "ndcg@10": 0.01}}]
        torch.save({"state": {"history": hist, "untrained_valid": {"ndcg@10": 0.003}, "phase": 1, "epoch": 0}},
                   run / "checkpoint.pt")
    args = argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs")
    text = mod.report(args)
    assert "| Laser (M-Former prefix + suffix) | minilm | UNFINISHED (1, epoch 0; see its curve) |" in text
    assert "**main** (minilm; curve test users 500; UNFINISHED, the curve so far)" in text
    main_curve = text.split("**main** (")[1].split("**")[0]
    assert "| 1 | 0 | 8.400 | 1.250 | 2.00 | 1.00 |" in main_curve
    assert "| 1 | 0 | 8.400 | — | 2.00 | 1.00 |" in text.split("**no-mformer** (")[1].split("**")[0]
    mod.REPORT.write_text(text)
    for name in ("main", "no-mformer"):  # another machine, without the run folders
        (tmp_path / "runs" / name / "checkpoint.pt").unlink()
    assert "**main**" not in mod.report(args) and "| 1 | 0 | 8.400 | 1.250 | 2.00 | 1.00 |" not in mod.report(args)


def test_a_newer_pulled_record_is_never_overwritten_by_an_older_run_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    import records

    run, record = tmp_path / "runs" / "seed~0", tmp_path / "records" / "seed~0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"seed": 0, "test": {"ndcg@10": 0.05}}))
    np.savez(run / "ranks.npz", test_ranks=np.arange(4))
    assert records.keep_record(run, record)
    assert records.source(run, record) == run  # the same result: the run folder is read
    # another machine reran it and its record was pulled: newer than the local run, another result
    (record / "metrics.json").write_text(json.dumps({"seed": 0, "test": {"ndcg@10": 0.07}}))
    os.utime(run / "metrics.json", (time.time() - 60, time.time() - 60))
    assert records.newer_record(run, record)
    assert records.keep_record(run, record) is False and "newer result" in capsys.readouterr().err
    assert json.loads((record / "metrics.json").read_text())["test"]["ndcg@10"] == 0.07
    assert records.source(run, record) == record and records.finished(run.parent, record.parent) == [record]
    # a local rerun that finishes after the pull replaces the record again
    (run / "metrics.json").write_text(json.dumps({"seed": 0, "test": {"ndcg@10": 0.06}}))
    assert not records.newer_record(run, record) and records.keep_record(run, record)
    assert json.loads((record / "metrics.json").read_text())["test"]["ndcg@10"] == 0.06
    # with finished_at recorded, it decides, whatever the file times (a checkout or a copy resets them)
    (run / "metrics.json").write_text(json.dumps({"seed": 0, "test": {"ndcg@10": 0.06},
                                                  "finished_at": "2026-12-01T10:00:00+00:00"}))
    (record / "metrics.json").write_text(json.dumps({"seed": 0, "test": {"ndcg@10": 0.08},
                                                     "finished_at": "2026-12-02T10:00:00+00:00"}))
    os.utime(record / "metrics.json", (time.time() - 60, time.time() - 60))  # the record's file looks older
    assert records.newer_record(run, record) and records.source(run, record) == record
    (record / "metrics.json").write_text(json.dumps({"seed": 0, "test": {"ndcg@10": 0.08},
                                                     "finished_at": "2026-11-30T10:00:00+00:00"}))
    assert not records.newer_record(run, record)  # newer file, older result: the run folder's is kept
    # a retest of the older model (later finished_at, the training's own kept in "retested") is no newer training
    retest = {"seed": 0, "test": {"ndcg@10": 0.061}, "finished_at": "2026-12-03T10:00:00+00:00",
              "retested": {"trained_finished_at": "2026-11-29T10:00:00+00:00"}}
    (record / "metrics.json").write_text(json.dumps(retest))
    assert records.trained_at(retest).day == 29 and not records.newer_record(run, record)
    # a naive time counts as UTC; an unreadable one falls back to file times instead of stopping the report
    assert records.trained_at({"finished_at": "2026-12-02T10:00:00"}) > records.trained_at(
        {"finished_at": "2026-12-02T09:00:00+00:00"})
    assert records.trained_at({"finished_at": "yesterday"}) is None and records.trained_at({}) is None
    assert records.keep_record(run, record)
    assert json.loads((record / "metrics.json").read_text())["test"]["ndcg@10"] == 0.06


def test_when_a_newer_record_is_the_result_its_diagnostics_are_shown_and_the_old_run_is_not_diagnosed(
        monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    run, record = tmp_path / "runs" / "no-prefix", tmp_path / "records" / "no-prefix"
    _laser_record(run, ndcg=0.03)
    _laser_record(record, ndcg=0.04)
    for folder, when in ((run, "2026-12-01T00:00:00+00:00"), (record, "2026-12-02T00:00:00+00:00")):
        m = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**m, "finished_at": when}))
    (run / "checkpoint.pt").write_bytes(b"")  # the local, older model, its file touched after the record's diagnostics
    os.utime(run / "checkpoint.pt", (time.time() + 10, time.time() + 10))
    theirs = {"item_cos_mean": 0.25, "item_cos_std": 0.1, "tau": 0.05, "logit_std": 2.0, "token_norm": 1.0,
              "prefix_norm": None, "suffix_norm": 1.5}
    (record / "diagnostics.json").write_text(json.dumps(theirs))
    calls = []
    monkeypatch.setattr(mod, "diagnose", lambda folder: calls.append(folder) or {**theirs, "item_cos_mean": 0.9})
    text = mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs"))
    assert "| Laser w/o prefix | minilm | 1000 (seeded) | 3107 | 1000 | 3 | 2, 0 | 10.00 | 4.00 |" in text
    assert "| no-prefix | 0.250 (0.100) | 0.05 | 2.00 | 1.000 | — | 1.500 |" in text and calls == []
    assert json.loads((record / "diagnostics.json").read_text()) == theirs  # never replaced by the older model's


def test_the_smollm2_diagnostics_have_their_own_one_epoch_budget(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    args = argparse.Namespace(data=tmp_path, idrec_run=tmp_path / "b", cache=tmp_path, train_users=999, valid_users=1000,
                              curve_users=500, smollm2_test_users=None, test_users=None, phase1_epochs=2,
                              phase2_epochs=1, threads=1, lr=1e-3)
    main = mod.run_config("smollm2", args)
    for variant, key, value in (("smollm2-token-scale", "prefix_scale", "token"),
                                ("smollm2-constant-input", "prefix_input", "constant"),
                                ("smollm2-paper-lr", "prefix", "mformer")):
        diag = mod.run_config(variant, args)
        assert (diag.phases.phase1_max_epochs, diag.phases.phase2_epochs, diag.max_eval_users) == (1, 0, 1000)
        assert getattr(diag.bituning, key) == value
        assert diag.optim.lr == (1e-4 if variant == "smollm2-paper-lr" else 1e-3) and main.optim.lr == 1e-3
        assert dataclasses.replace(diag, optim=main.optim, bituning=main.bituning, phases=main.phases,
                                   max_eval_users=None) == main  # nothing else differs
        # otherwise the SmolLM2 M-Former run's budget: the same users, so its first epoch compares
        assert (diag.max_train_users, diag.max_valid_users, diag.test_curve_users) == (333, 500, 250)
        assert diag.idrec_run == main.idrec_run == str(tmp_path / "b")
    assert (main.phases.phase1_max_epochs, main.max_eval_users) == (2, None) and args.phase1_epochs == 2


def test_retest_tests_a_finished_run_on_every_user_from_its_recorded_config(monkeypatch, tmp_path):
    """--retest: a run made under another form of run_config (here a tiny one) is tested on every test user from
    the config it recorded; nothing is retrained (the history stays), and a missing run is named."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.laser import trainer
    from laser_repro.laser.config import PhaseConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _load(monkeypatch, tmp_path)
    data = tiny_dataset(tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "cache", phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=0),
                      max_valid_users=10, max_eval_users=5)
    first = trainer.train_laser(cfg, tmp_path / "runs" / "smollm2-no-prefix")
    args = argparse.Namespace(runs=tmp_path / "runs", retest=["smollm2-no-prefix"], threads=1)
    mod.retest(args)
    after = json.loads((tmp_path / "runs" / "smollm2-no-prefix" / "metrics.json").read_text())
    assert first["test"]["n"] == 5 and after["test"]["n"] == load_dataset(data).eval_users("test").shape[0]
    assert after["history"] == first["history"] and after["retested"]["ranked_now"] == after["test"]["n"] - 5
    with pytest.raises(SystemExit, match="no finished run"):
        mod.retest(argparse.Namespace(runs=tmp_path / "runs", retest=["smollm2"], threads=1))
    # a later training of it pulled into its record: retesting the older local model is refused, nothing changes
    record = tmp_path / "records" / "smollm2-no-prefix"
    record.mkdir(parents=True)
    (record / "metrics.json").write_text(json.dumps({**after, "finished_at": "2099-01-01T00:00:00+00:00",
                                                     "retested": None, "test": {"n": 1}}))
    before = (tmp_path / "runs" / "smollm2-no-prefix" / "metrics.json").read_text()
    with pytest.raises(SystemExit, match="holds a later training"):
        mod.retest(args)
    assert (tmp_path / "runs" / "smollm2-no-prefix" / "metrics.json").read_text() == before


def test_prefix_steps_measures_the_prefix_move_of_real_adam_steps(monkeypatch, tmp_path):
    """bench_prefix_steps.py on a tiny backbone: Adam's first step moves every coordinate of a learnable prefix
    by lr (m / sqrt(v) = +-1 after bias correction), so its first move is lr sqrt(L d) / ||p_0||, by hand; the
    M-Former's prefix moves too, and the report names both. With no table given, the configuration's own untrained
    refresh is used; a step of lr 0 moves neither the prefix nor the user vectors, and keeps every top-10 item."""
    import dataclasses as dc

    import torch

    from laser_repro.laser.config import BiTuningConfig, OptimConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _script(monkeypatch, "bench_prefix_steps")
    data = tiny_dataset(tmp_path / "data")
    base = tiny_config(data, tmp_path / "cache", backbone_precision="fp32")

    def tiny_run_config(variant, args):  # the real-data configs, shrunk: the prefix kind and lr are what vary
        prefix = "learnable" if variant in ("smollm2-no-mformer", "no-mformer") else "mformer"
        return dc.replace(base, bituning=BiTuningConfig(prefix=prefix, n_prefix=4),
                          optim=OptimConfig(batch_size=8, lr=args.lr))

    monkeypatch.setattr(mod, "run_config", tiny_run_config)
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(data)
    run = tmp_path / "runs" / "smollm2-no-prefix"
    run.mkdir(parents=True)
    torch.save({"table": torch.randn(ds.n_items, 64)}, run / "checkpoint.pt")  # tiny-gpt2: width 64
    table, name = mod.fixed_table(tmp_path / "runs")
    assert name == "smollm2-no-prefix" and table.shape[0] == ds.n_items
    args = argparse.Namespace(steps=3)
    learn = mod.measure("smollm2-no-mformer", 1e-3, args, table)
    moved = 32 * 4 * table.shape[1]  # 32 probe rows share the prefix's L x d coordinates, each moved by lr
    assert learn["move_first"] == pytest.approx(1e-3 * moved ** 0.5 / learn["p0_norm"], rel=1e-3)
    slow = mod.measure("smollm2-no-mformer", 1e-4, args, table)
    assert slow["move_first"] == pytest.approx(learn["move_first"] / 10, rel=1e-3)  # the same init, lr / 10
    former = mod.measure("smollm2", 1e-3, args, table)
    assert former["steps"] == 3 and former["move_median"] > 0 and former["drift"] > 0
    assert former["user_drift"] > 0 and 0 <= former["top10_kept"] <= 1
    # its steps are the run's first steps: the batches phase 1's epoch 0 draws (trainer.run_epoch), in that order
    from laser_repro.laser import trainer

    drawn = []
    real_order = trainer.batch_order
    monkeypatch.setattr(trainer, "batch_order", lambda *a, **k: drawn.append(real_order(*a, **k)) or drawn[-1])
    mod.measure("smollm2-no-mformer", 1e-3, args, table)
    cfg = tiny_run_config("smollm2-no-mformer", argparse.Namespace(lr=1e-3))
    model = trainer.build_model(cfg, ds, torch.device("cpu"))
    rows = trainer.training_rows(ds, trainer.training_users(ds, cfg), cfg.min_train_history)
    trainer.run_epoch(model, rows, table, *trainer.make_optimizer(cfg, model, 1), cfg, 1, 0)
    assert len(drawn) == 2 and len(drawn[0]) > 3 and all(np.array_equal(a, b) for a, b in zip(*drawn))
    # the MiniLM cases: each configuration's own untrained refresh (the table of its run's epoch 0)
    own = mod.measure("no-mformer", 1e-3, args, None)
    assert own["own_table"] and own["move_first"] == pytest.approx(learn["move_first"], rel=1e-3)
    still = mod.measure("main", 0.0, args, None)  # Adam at lr 0: nothing moves, so no ranking changes
    assert still["move_median"] == 0 and still["user_move_median"] == 0 and still["top10_kept"] == 1.0
    assert mod.kept(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[2, 5], [4, 3]])) == 0.75  # (1/2 + 2/2) / 2
    text = mod.report([learn, former, own], name, argparse.Namespace(threads=1, steps=3, backbones=["smollm2"]))
    assert "| learnable | 0.001 | 3 |" in text and "| M-Former | 0.001 | 3 |" in text and name in text


def test_seeds_section_averages_each_variant_over_its_seeds(monkeypatch, tmp_path):
    """Seed means and the seed-averaged paired t-test, by hand: 4 users, rank 0 (N@10 = 1) or rank 20 (N@10 = 0)."""
    mod = _load(monkeypatch, tmp_path)
    ranks = {"main": [0, 20, 0, 20], "main-seed1": [0, 0, 0, 20], "bert4rec": [20, 20, 20, 0],
             "main-lambda0.1-seed1": [0, 20, 20, 20], "main-lambda0.1-seed2": [0, 0, 0, 0],
             "main-lr1e-4": [20, 20, 0, 0], "main-lr1e-4-seed1": [0, 0, 20, 20], "main-rerun": [20, 20, 20, 0],
             "no-mformer-lr1e-4": [0, 20, 20, 20], "no-prefix-lr1e-4": [0, 0, 20, 20],
             "no-prefix-lr1e-4-seed1": [20, 20, 20, 20]}
    found, metrics = {}, {}
    for name, r in ranks.items():
        folder = tmp_path / name
        folder.mkdir()
        hit = np.array(r) == 0
        metrics[name] = {"test": {"recall@10": hit.mean(), "ndcg@10": hit.mean(), "mrr": hit.mean()}}
        (folder / "metrics.json").write_text(json.dumps(metrics[name]))
        np.savez(folder / "ranks.npz", test_users=np.arange(4), test_targets=np.arange(4), test_ranks=np.array(r))
        found[name] = folder
    text = "\n".join(mod.seeds_section(found, metrics))
    assert "| main | 50.00 | 75.00 | not run | 2 | 62.50 | 62.50 ± 17.68 | 62.50 |" in text
    assert "| no-prefix | not run | not run | not run | 0 | — | — | — |" in text
    # per-user means over seeds [1, .5, 1, 0] against [0, 0, 0, 1]: differences [1, .5, 1, -1], mean .375,
    # sample std .9465, t = .375 / (.9465 / 2) = 0.79
    assert "| main (seeds 0, 1) vs bert4rec | 4 | 62.50 vs 25.00 | 0.79 |" in text
    assert "| main (seeds 0, 1) vs no-prefix | — | — | — | — | not run |" in text
    # lambda 0.1 against main only on the seed both ran (1): [1, 0, 0, 0] against [1, 1, 1, 0], differences
    # [0, -1, -1, 0], mean -.5, sample std .5774, t = -.5 / (.5774 / 2) = -1.73; its seed 2 (main lacks it) left out
    assert "| main-lambda0.1 (seeds 1) vs main (seeds 1) | 4 | 25.00 vs 75.00 | -1.73 |" in text
    assert "| main-lambda0.1 | not run | 25.00 | 100.00 | 2 |" in text
    # lr 1e-4 against main on seeds 0 and 1: per-user means [.5, .5, .5, .5] against [1, .5, 1, 0], differences
    # [-.5, 0, -.5, .5], mean -.125, sample std .4787, t = -.125 / (.4787 / 2) = -0.52
    assert "| main-lr1e-4 (seeds 0, 1) vs main (seeds 0, 1) | 4 | 50.00 vs 62.50 | -0.52 |" in text
    assert "| main-lr1e-4 | 50.00 | 50.00 | not run | 2 | 50.00 | 50.00 ± 0.00 | 50.00 |" in text
    # main's config pooled over its first runs and reruns: 50, 75 and 25 (mean 50, sample std 25), per seed
    # "first / rerun"; per user [2/3, 1/3, 2/3, 1/3] against [0, 0, 0, 1]: differences mean .25, sample std .6310,
    # t = .25 / (.6310 / 2) = 0.79
    assert "| main + main-rerun (3 runs) | 50.00 / 25.00 | 75.00 | not run | 3 | 50.00 | 50.00 ± 25.00 | 50.00 |" in text
    assert "| main + main-rerun (3 runs) vs bert4rec | 4 | 50.00 vs 25.00 | 0.79 |" in text
    assert "| main-rerun (seeds 0) vs main (seeds 0) | 4 | 25.00 vs 50.00 |" in text
    # Table 3 at lr 1e-4: main-lr1e-4's per-user means [.5, .5, .5, .5]; against no-mformer-lr1e-4 (seed 0 only,
    # [1, 0, 0, 0]) differences [-.5, .5, .5, .5], mean .25, sample std .5, t = .25 / (.5 / 2) = 1.00; against
    # no-prefix-lr1e-4 over its seeds 0 and 1 ([.5, .5, 0, 0]) differences [0, 0, .5, .5], mean .25, sample std
    # .2887, t = 1.73
    assert "| no-prefix-lr1e-4 | 50.00 | 0.00 | not run | 2 | 25.00 | 25.00 ± 35.36 | 25.00 |" in text
    assert "| main-lr1e-4 (seeds 0, 1) vs no-mformer-lr1e-4 (seeds 0) | 4 | 50.00 vs 25.00 | 1.00 |" in text
    assert "| main-lr1e-4 (seeds 0, 1) vs no-prefix-lr1e-4 (seeds 0, 1) | 4 | 50.00 vs 25.00 | 1.73 |" in text


def test_the_diagnostics_are_the_main_run_of_their_seed_with_one_change(monkeypatch, tmp_path):
    """lambda 0.1 changes only Eq. 10's weight; lr 1e-4 only the learning rate (App. B); the rerun nothing, under
    every seed."""
    from laser_repro.laser.config import LossConfig

    mod = _load(monkeypatch, tmp_path)
    args = argparse.Namespace(data=tmp_path, idrec_run=tmp_path / "b", cache=tmp_path, train_users=999, valid_users=1000,
                              curve_users=500, smollm2_test_users=None, test_users=None, phase1_epochs=2,
                              phase2_epochs=1, threads=1, lr=1e-3)
    for sfx in ("", "-seed1", "-seed2"):
        main, diag = mod.run_config("main" + sfx, args), mod.run_config("main-lambda0.1" + sfx, args)
        assert (diag.loss.lb_weight, main.loss.lb_weight) == (0.1, LossConfig().lb_weight) and main.loss.lb_weight != 0.1
        assert dataclasses.replace(diag, loss=main.loss) == main  # same seed, users, budget and BERT4Rec input
        assert diag.seed == mod.seed_of("main" + sfx) and diag.max_eval_users is None
        slow = mod.run_config("main-lr1e-4" + sfx, args)
        assert (slow.optim.lr, main.optim.lr) == (1e-4, 1e-3)
        assert dataclasses.replace(slow, optim=main.optim) == main and slow.seed == mod.seed_of("main" + sfx)
        assert mod.run_config("main-rerun" + sfx, args) == main
    longer, slow = mod.run_config("main-lr1e-4-longer", args), mod.run_config("main-lr1e-4", args)
    assert (longer.phases.phase1_max_epochs, slow.phases.phase1_max_epochs) == (4, 2)
    assert dataclasses.replace(longer, phases=slow.phases) == slow  # seed 0's lr 1e-4 run, more epochs only
    for sfx in ("", "-seed1", "-seed2"):  # the two ablations at lr 1e-4: each its lr-1e-3 run, the lr only changed
        for base in ("no-mformer", "no-prefix"):
            ablation, slow = mod.run_config(base + sfx, args), mod.run_config(f"{base}-lr1e-4{sfx}", args)
            assert (slow.optim.lr, ablation.optim.lr) == (1e-4, 1e-3) and slow.seed == mod.seed_of(base + sfx)
            assert dataclasses.replace(slow, optim=ablation.optim) == ablation


def test_divergence_compares_two_lockstep_copies_of_a_run(monkeypatch, tmp_path):
    """bench_divergence.py on a tiny backbone: two unperturbed copies stay identical through every step (same
    weights, dropout masks and bit-repeatable gradients: distance 0, all top-10 items shared, no expert differs); a
    perturbation of 1e-3 starts the copies 1e-3 apart (||theta eps z|| / ||theta|| = eps within sampling error) and
    reaches the user vectors; the learnable prefix has no experts to compare."""
    import copy
    import dataclasses as dc

    import torch

    from laser_repro.laser.config import BiTuningConfig, OptimConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _script(monkeypatch, "bench_divergence")
    budget = mod.runs_budget(argparse.Namespace(data=tmp_path, idrec_run=tmp_path, cache=tmp_path, threads=1, steps=3))
    assert mod.case_config("main", 3e-4, budget).seed == 0 and mod.case_config("main", 3e-4, budget).optim.lr == 3e-4
    budget.seed = 1  # --seed: the real run config takes it
    assert mod.case_config("main", 3e-4, budget, {"mformer.top_k": 8}).seed == 1
    assert mod.case_config("main", 3e-4, budget, {"mformer.top_k": 8}).mformer.top_k == 8
    both = mod.case_config("main", 1e-3, budget, {"mformer.query_init_std": 1.0, "bituning.prefix_input": "constant"})
    assert (both.mformer.query_init_std, both.bituning.prefix_input, both.mformer.top_k) == (1.0, "constant", 3)
    data = tiny_dataset(tmp_path / "data")
    base = tiny_config(data, tmp_path / "cache", backbone_precision="fp32")
    base = dc.replace(base, mformer=dc.replace(base.mformer, dropout=0.1))  # as the runs: masks both copies must share

    def tiny_run_config(variant, args):  # the real-data configs, shrunk: the prefix kind and lr are what vary
        return dc.replace(base, bituning=BiTuningConfig(prefix="learnable" if variant == "no-mformer" else "mformer",
                                                        n_prefix=4), optim=OptimConfig(batch_size=8, lr=args.lr))

    monkeypatch.setattr(mod, "run_config", tiny_run_config)
    assert mod.checkpoints(100) == [0, 1, 2, 5, 10, 20, 50, 100] and mod.checkpoints(7) == [0, 1, 2, 5, 7]
    assert mod.checkpoints(20, every=5) == [0, 1, 2, 5, 10, 15, 20]
    assert mod.checkpoints(7, every=3) == [0, 1, 2, 3, 5, 6, 7]
    args = argparse.Namespace(steps=3)
    same = mod.measure("main", 1e-3, args, 0.0)
    assert [p["step"] for p in same["points"]] == [0, 1, 2, 3] and same["loss_gap"] == 0
    assert all(p["weights"] == 0 and p["user"] == 0 and p["top10"] == 1 and p["experts"] == 0 for p in same["points"])
    apart = mod.measure("main", 1e-3, args, 1e-3)
    assert apart["points"][0]["weights"] == pytest.approx(1e-3, rel=0.1)
    assert apart["points"][0]["user"] > 0 and apart["points"][-1]["weights"] > 0
    learn = mod.measure("no-mformer", 1e-3, args, 1e-3)
    assert learn["points"][0]["experts"] is None and learn["points"][0]["weights"] == pytest.approx(1e-3, rel=0.1)
    # copy a's prefix path: Adam's first step moves each learnable prefix coordinate by lr (no weight decay), so the
    # path after it is lr sqrt(numel) / ||P_0|| (every probe history has the same prefix); one step's path is its
    # drift; the path only grows and bounds the drift (triangle inequality)
    prefix = mod.run_start(tiny_run_config("no-mformer", argparse.Namespace(lr=1e-3))).model.prefix.detach()
    first = learn["points"][1]
    assert first["path"] == pytest.approx(1e-3 * prefix.numel() ** 0.5 / float(prefix.norm()), rel=1e-3)
    assert first["drift"] == pytest.approx(first["path"], rel=1e-6) and learn["points"][0]["path"] == 0
    for run in (same, apart, learn):
        paths = [p["path"] for p in run["points"]]
        assert paths == sorted(paths) and paths[-1] > 0
        assert all(p["drift"] <= p["path"] * (1 + 1e-6) for p in run["points"])
    # where the copies part: the first checkpoint 5% apart, and the one before it
    marks = [{"step": s, "user": u, "path": s / 10} for s, u in ((0, 0.01), (5, 0.02), (10, 0.07), (20, 0.3))]
    assert mod.parting(marks) == ["10", "7.0e-02", "1", "—", "5", "0.5", "—"]  # no encoder-input path traced
    marks[1]["path_in"], marks[2]["path_in"] = 0.25, 0.125
    assert mod.parting(marks) == ["10", "7.0e-02", "1", "0.125", "5", "0.5", "0.25"]
    assert mod.parting(marks, apart=0.5) == ["—"] * 7
    # a GPT-2 backbone has no encoder-input path (its first layer reads the prefix as it is)
    assert all(p["path_in"] is None for p in learn["points"])
    # top k = the tiny M-Former's K
    every = mod.measure("main", 1e-3, args, 1e-3, {"mformer.top_k": 4}, "M-Former, all 4 experts")
    assert all(p["experts"] == 0 for p in every["points"]) and every["points"][-1]["weights"] > 0  # nothing to flip
    text = mod.report([same, learn, every], argparse.Namespace(threads=1, steps=3, eps=1e-3))
    assert "| main | 0.001 | 0.0e+00 | 0.0e+00 | 0.0e+00 | 0.0e+00 |" in text
    assert "| no-mformer | 0.001 | — | — | — | — |" in text and "| M-Former, all 4 experts | 0.001 |" in text
    assert "**Prefix path (copy a)**" in text and "| first step apart |" in text
    assert "every expert selected" in text and "--cases" not in text and "(seed 0:" in text and "--seed" not in text
    # the backbone's precision as each case's own config sets it (a report once assumed the default `auto`)
    assert "the frozen backbone in fp32 (`backbone_precision: fp32`) (" in text
    base = dc.replace(base, backbone_precision="bf16")
    bf16 = mod.measure("main", 1e-3, argparse.Namespace(steps=1), 0.0)
    assert bf16["precision"] == "under bf16 autocast (`backbone_precision: bf16`)"
    text = mod.report([same, bf16], argparse.Namespace(threads=1, steps=3, eps=1e-3))
    assert "backbone in fp32 (`backbone_precision: fp32`) / under bf16 autocast (`backbone_precision: bf16`) (" in text
    text = mod.report([same], argparse.Namespace(threads=1, steps=3, eps=1e-3, cases=["main-lr0.0003"], seed=1,
                                                 every=2))
    assert "--eps 0.001 --every 2 --cases main-lr0.0003 --seed 1` on" in text and "(seed 1:" in text
    # --groups: the weight distance within each group, by hand: the router's weights moved by 3-4 of 12-16 (|.| 5 of
    # 20), expert 1's queries by 1 of 2, expert 0's not, the suffix not
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mformer = torch.nn.Module()
            self.mformer.queries = torch.nn.Parameter(torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]]]))
            self.mformer.router = torch.nn.Linear(2, 1, bias=False)
            self.suffix = torch.nn.Linear(1, 1)
            with torch.no_grad():
                self.mformer.router.weight.copy_(torch.tensor([[12.0, 16.0]]))

    ta = Tiny()
    tb = copy.deepcopy(ta)
    with torch.no_grad():
        tb.mformer.router.weight += torch.tensor([[3.0, 4.0]])
        tb.mformer.queries[1, 0, 1] += 1.0
    assert mod.group_distances(ta, tb) == {"queries e0": 0.0, "queries e1": 0.5, "router": 0.25, "suffix": 0.0}
    grouped = mod.measure("main", 1e-3, argparse.Namespace(steps=2, groups=True), 1e-3)
    first = grouped["points"][0]["groups"]
    assert {"router", "suffix", "queries e0", "out_proj.weight"} <= set(first) and "queries" not in first
    # eps z per weight: about eps in every group of nonzero weights (zero-initialised biases stay equal)
    assert max(first.values()) < 3e-3 and all(first[g] > 3e-4 for g in ("router", "queries e0", "out_proj.weight"))
    assert "groups" not in apart["points"][0] and "per_step" not in apart  # only with --groups / --grads
    # --grads: each step's distance before it is the checkpoint's weight distance; unperturbed copies take the
    # same gradients and updates; perturbed ones differ in both
    stepped = mod.measure("main", 1e-3, argparse.Namespace(steps=2, grads=True), 1e-3)
    assert [q["step"] for q in stepped["per_step"]] == [1, 2]
    assert [q["before"] for q in stepped["per_step"]] == pytest.approx([p["weights"] for p in stepped["points"][:2]])
    assert all(q["grad"] > 0 and q["update"] > 0 for q in stepped["per_step"])
    # the group whose gradients part most: by hand on the tiny module, expert 1's query gradient moved by 1 of 2
    assert all(q["grad_top"][1] > 0 for q in stepped["per_step"])
    ta.mformer.queries.grad = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]]])
    tb.mformer.queries.grad = torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]])
    assert mod.group_distances(ta, tb, "grads") == {"queries e0": 0.0, "queries e1": 0.5, "router": 0.0,
                                                    "suffix": 0.0}
    still = mod.measure("main", 1e-3, argparse.Namespace(steps=2, grads=True), 0.0)["per_step"]
    assert all(q["before"] == q["grad"] == q["update"] == 0 and q["flips"] == 0 for q in still)
    assert all(q["rows"] == 8 and q["margin"] >= 0 for q in still)  # the batch's rows, each routed once a step
    # by hand: row 1's experts differ (the order within a row does not count); copy a's margins 0.2 and 0.1
    from types import SimpleNamespace as NS

    w = torch.tensor([[0.5, 0.1, 0.3, 0.1], [0.1, 0.4, 0.2, 0.3]])
    a_out = NS(experts=torch.tensor([[0, 2], [1, 3]]), weights=w)
    b_out = NS(experts=torch.tensor([[2, 0], [1, 2]]), weights=a_out.weights)
    assert mod.routing_flips([[a_out], [b_out]], 2) == {"flips": 1, "rows": 2, "margin": pytest.approx(0.1)}
    assert mod.routing_flips([[], []], 2) == {}
    assert mod.rel(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0])) == 0.0
    assert mod.rel(torch.tensor([3.0, 5.0]), torch.tensor([3.0, 4.0])) == pytest.approx(0.2)
    text = mod.report([stepped], argparse.Namespace(threads=1, steps=2, eps=1e-3, grads=True))
    assert "--eps 0.001 --grads` on" in text and "| step | weights before | gradients | updates |" in text
    text = mod.report([grouped], argparse.Namespace(threads=1, steps=2, eps=1e-3, groups=True))
    assert "--eps 0.001 --groups` on" in text and "**Weight distance by group** (main, lr 0.001;" in text
    assert "| queries e0 | " in text and "| group | step 0 | step 1 | step 2 |" in text
    # --every: a checkpoint at every 2nd step besides the log-spaced ones
    assert [p["step"] for p in mod.measure("main", 1e-3, argparse.Namespace(steps=5, every=2), 0.0)["points"]] == [
        0, 1, 2, 4, 5]
    # the router kept at its initial weights in both copies: Eq. 4 selects the same experts in both at every step,
    # while the other weights, perturbed, train apart
    fixed = mod.measure("main", 1e-3, args, 1e-3, None, "M-Former, router untrained", ("router",))
    assert all(p["experts"] == 0 for p in fixed["points"]) and fixed["points"][-1]["weights"] > 0
    assert fixed["points"][0]["weights"] == pytest.approx(1e-3, rel=0.1)


def test_batch_sensitivity_takes_the_runs_states_and_masks(monkeypatch, tmp_path):
    """bench_batch_sensitivity.py on a tiny M-Former run: every (state, batch) cell, each state the weights the run has
    after that many of its own steps, and a cell's ratio computed twice is the same to the bit (the batch's dropout
    masks are replayed, not drawn anew); the rows of the largest cell are that batch's."""
    import dataclasses as dc

    import torch

    from laser_repro.laser.config import BiTuningConfig, OptimConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _script(monkeypatch, "bench_batch_sensitivity")
    data = tiny_dataset(tmp_path / "data")
    base = tiny_config(data, tmp_path / "cache", backbone_precision="fp32")
    cfg = dc.replace(base, bituning=BiTuningConfig(prefix="mformer", n_prefix=4), optim=OptimConfig(batch_size=8, lr=1e-3),
                     mformer=dc.replace(base.mformer, dropout=0.1))
    monkeypatch.setattr(sys.modules["bench_divergence"], "run_config", lambda variant, args: cfg)
    args = argparse.Namespace(states=[0, 2], batches=3, eps=1e-4, lr=1e-3, seed=0, transplant=None)
    r = mod.measure(args)
    assert r["groups"] is None
    assert set(r["grid"]) == {(s, j) for s in (0, 2) for j in (1, 2, 3)}
    assert all(np.isfinite(v) and v > 0 for v in r["grid"].values())
    ds, model, histories, targets, _, batches = mod.run_start(cfg)  # the run again: two of its own steps
    table = model.embed_items(ds.n_items, cfg.item_batch_size)
    from laser_repro.laser import trainer

    opt = trainer.make_optimizer(cfg, model, len(batches))[0]
    assert torch.equal(mod.weights(model), r["state_weights"][0])
    for step in range(2):
        mod.train_step(model, opt, cfg, histories, targets, batches[step], table)
    assert torch.equal(mod.weights(model), r["state_weights"][2])
    masks = torch.get_rng_state()
    rows = [histories[i] for i in batches[0]]
    once = mod.ratio(model, 1e-4, rows, targets[batches[0]], table, masks)
    assert mod.ratio(model, 1e-4, rows, targets[batches[0]], table, masks) == once
    s_top, j_top = r["top"]
    assert [x["row"] for x in r["per_row"]] == [int(i) for i in batches[j_top - 1]]
    assert "| state (steps trained) |" in mod.report(r, argparse.Namespace(threads=1, **vars(args)))


def test_batch_sensitivity_transplant_moves_one_weight_group_at_a_time(monkeypatch, tmp_path):
    """--transplant S: for each trainable weight group, the ratios at the initial weights with that group alone at
    step S's values and at step S's weights with it alone back at the initial values; ``mixed`` copies exactly that
    group's weights and leaves every other weight (and both inputs) as they were."""
    import dataclasses as dc

    import torch

    from laser_repro.laser.config import BiTuningConfig, OptimConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _script(monkeypatch, "bench_batch_sensitivity")
    data = tiny_dataset(tmp_path / "data")
    base = tiny_config(data, tmp_path / "cache", backbone_precision="fp32")
    cfg = dc.replace(base, bituning=BiTuningConfig(prefix="mformer", n_prefix=4), optim=OptimConfig(batch_size=8, lr=1e-3))
    monkeypatch.setattr(sys.modules["bench_divergence"], "run_config", lambda variant, args: cfg)
    args = argparse.Namespace(states=[1], batches=2, eps=1e-4, lr=1e-3, seed=0, transplant=2)
    r = mod.measure(args)
    assert r["states"] == [0, 1, 2]  # the initial weights and step S's join the asked states
    ds, model, histories, targets, _, batches = mod.run_start(cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    groups = list(dict.fromkeys(mod.weight_group(n) for n in names))
    assert list(r["groups"]) == groups and {"router", "queries", "suffix"} <= set(groups)
    for v in r["groups"].values():
        assert len(v["only"]) == len(v["back"]) == 2 and all(np.isfinite(x) and x > 0 for x in v["only"] + v["back"])
        assert v["move"] > 0  # two Adam steps move every trainable group
    start, moved = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(1.0)
    before = [p.clone() for p in start.parameters()]
    out = mod.mixed(start, moved, "router")
    for (name, p), a, b in zip(out.named_parameters(), start.parameters(), moved.parameters()):
        assert torch.equal(p, b if p.requires_grad and mod.weight_group(name) == "router" else a), name
    assert all(torch.equal(p, q) for p, q in zip(start.parameters(), before))
    text = mod.report(r, argparse.Namespace(threads=1, **vars(args)))
    assert "--transplant 2" in text and "| router |" in text and "only G moved" in text


def test_divergence_main_hands_its_options_to_each_case(monkeypatch, tmp_path, capsys):
    """bench_divergence.main passes --every, --seed and --steps on to measure() for each case (a run of 2026-12-06
    wrote "--every 5" in its report while measuring only the log-spaced steps), and the report names them."""
    mod = _script(monkeypatch, "bench_divergence")
    seen = []

    def fake_measure(variant, lr, args, eps, overrides=None, label="", frozen=()):
        seen.append((variant, lr, args.every, args.seed, args.steps, eps))
        point = {"step": 0, "weights": 0.0, "user": 0.0, "top10": 1.0, "experts": None, "path": 0.0, "drift": 0.0,
                 "path_in": None}
        return {"label": label, "lr": lr, "steps": 0, "points": [point], "loss": 0.0, "loss_gap": 0.0,
                "s_per_step": 0.0, "precision": "in fp32 (`backbone_precision: fp32`)"}

    monkeypatch.setattr(mod, "measure", fake_measure)
    out = tmp_path / "d.md"
    assert mod.main(["--every", "5", "--seed", "2", "--steps", "30", "--threads", "1", "--cases", "main-lr0.0003",
                     "--out", str(out)]) == 0
    assert seen == [("main", 3e-4, 5, 2, 30, 1e-7)]
    assert "--steps 30 --eps 1e-07 --every 5 --cases main-lr0.0003 --seed 2` on" in out.read_text()
    # a negative --every would measure the log-spaced steps while the report named it: refused, by name
    with pytest.raises(SystemExit):
        mod.main(["--every", "-1", "--out", str(tmp_path / "e.md")])
    assert "--every: expected 0" in capsys.readouterr().err and not (tmp_path / "e.md").exists() and len(seen) == 1


def test_divergence_encoder_input_is_what_minilms_first_layer_reads(monkeypatch):
    """bench_divergence.encoder_input on the real MiniLM: equal to the input of its first encoder layer at the prefix
    positions of a left-padded batch (prefix, then text), as Backbone.forward runs it."""
    import types

    import torch

    from laser_repro.laser.backbones import load_backbone

    mod = _script(monkeypatch, "bench_divergence")
    bb = load_backbone("minilm", precision="fp32")
    gen = torch.Generator().manual_seed(0)
    prefix = torch.randn(2, 4, bb.hidden_size, generator=gen)
    text = bb.embed(torch.tensor([[101, 2023, 2003, 102], [101, 7592, 102, 0]]))
    embeds = torch.cat([torch.zeros(2, 1, bb.hidden_size), prefix, text], dim=1)
    embeds[1] = torch.cat([torch.zeros(2, bb.hidden_size), prefix[1], text[1, :3]])  # row 1: one more pad, left
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 0] = mask[1, :2] = False
    seen = []
    hook = bb.model.encoder.layer[0].register_forward_pre_hook(lambda _m, args, kw: seen.append(
        (args[0] if args else kw["hidden_states"]).detach()), with_kwargs=True)
    with torch.no_grad():
        bb(embeds, mask)
    hook.remove()
    got = mod.encoder_input(types.SimpleNamespace(backbone=bb), prefix)
    assert torch.allclose(got[0], seen[0][0, 1:5], atol=1e-5) and torch.allclose(got[1], seen[0][1, 2:6], atol=1e-5)


def test_prefix_anatomy_splits_a_step_by_group(monkeypatch, tmp_path):
    """bench_prefix_anatomy.py on a tiny M-Former: Adam's first step moves the output bias by lr in every coordinate,
    so that group alone moves the prefix by exactly lr sqrt(numel P); the output weight's move (through the model) is
    its step on the hooked inputs ||dW X|| (P is linear in W); at lr 0 nothing moves."""
    import dataclasses as dc

    import torch

    from laser_repro.laser.config import BiTuningConfig, OptimConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _script(monkeypatch, "bench_prefix_anatomy")
    assert [mod.group_of(n) for n in ("blocks.0.cross_attn.q.weight", "blocks.1.ff.0.bias", "blocks.1.ff_norm.weight",
                                      "queries", "query_norm.bias", "out_proj.weight", "out_proj.bias")] == [
        "blocks.0.cross_attn", "blocks.1.ff", "blocks.1.ff_norm", "queries", "query_norm", "out_proj.weight",
        "out_proj.bias"]
    # in phase: 1; opposite signs cancel: 0; one of two inputs zero: |1| / |1| = 1
    assert mod.coherence(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0]])) == 1.0
    assert mod.coherence(torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 1.0]])) == 0.0
    assert mod.coherence(torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])) == 1.0
    data = tiny_dataset(tmp_path / "data")
    base = tiny_config(data, tmp_path / "cache", backbone_precision="fp32")
    monkeypatch.setattr(mod, "run_config", lambda variant, args: dc.replace(
        base, bituning=BiTuningConfig(prefix="mformer", n_prefix=4), optim=OptimConfig(batch_size=8, lr=args.lr)))
    r = mod.measure(1e-3, argparse.Namespace(steps=3))
    assert r["steps"] == 3 and set(r["first"]) >= {"step", "router", "queries", "blocks.0.self_attn", "out_proj.bias"}
    assert r["first"]["out_proj.bias"] * r["p0_norm"] == pytest.approx(1e-3 * r["p_numel"] ** 0.5, rel=1e-3)
    assert r["first"]["out_proj.weight"] * r["p0_norm"] == pytest.approx(
        r["vs_learnable_first"] * 1e-3 * r["p_numel"] ** 0.5, rel=1e-4)
    assert r["first"]["step"] > 0 and 0 < r["coherence_first"] <= 1
    still = mod.measure(0.0, argparse.Namespace(steps=2))
    assert all(v == 0 for v in still["median"].values())
    text = mod.report([r, still], argparse.Namespace(threads=1, steps=3))
    assert "--top-k" not in text and f"top {r['top_k']} of {r['n_experts']} experts" in text
    every = mod.measure(1e-3, argparse.Namespace(steps=1), top_k=r["n_experts"])  # every expert selected
    assert every["top_k"] == every["n_experts"] == 4 and every["first"]["router"] > 0
    # every expert selected: no choice to flip, no gap, and the weights w of Eq. 4 sum to 1
    assert every["flips"] == 0 and every["gap"] is None and every["kept_w"][0] == pytest.approx(1.0)
    assert 0 <= r["flips_first"] <= 1 and r["gap"] >= 0 and 0 < r["kept_w"][0] < 1 and still["flips"] == 0
    assert "— (every expert selected)" in mod.report([every], argparse.Namespace(threads=1, steps=1))
    fixed = mod.measure(1e-3, argparse.Namespace(steps=2), frozen=("router",))  # the router untrained: no flips
    assert "router" not in fixed["median"] and fixed["flips"] == fixed["flips_first"] == 0 and fixed["median"]["step"] > 0
    assert "its router kept at its initial weights" in mod.report([fixed], argparse.Namespace(
        threads=1, steps=2, frozen=["router"]))
    # the bias starts at 0: its first relative step is infinite, its median over steps finite
    assert r["size"]["queries"] > 0 and still["size"]["queries"] == 0
    assert (f"| out_proj.bias | {r['median']['out_proj.bias']:.4f} / {r['first']['out_proj.bias']:.4f} | "
            f"{r['size']['out_proj.bias']:.4f} | 0.0000 / 0.0000 |") in text and "| step | " in text


def test_sharpness_measures_adams_preconditioned_sharpness(monkeypatch, tmp_path):
    """bench_sharpness.py: Adam's preconditioner after one step is (1 - beta1)(|g| + eps); Lanczos finds both
    eigenvalues of a hand 2x2 matrix, and both ends of a 40x40 spectrum in 12 steps; the double-backward H v
    through a tiny Laser model is symmetric (u.Hv = v.Hu) and equals the change of the gradient along v; the
    threshold is 38 / lr for beta1 = 0.9."""
    import dataclasses as dc

    import torch

    from laser_repro.laser.config import BiTuningConfig, OptimConfig
    from laser_repro.laser.tiny import tiny_config, tiny_dataset

    mod = _script(monkeypatch, "bench_sharpness")
    assert mod.threshold(1e-3, 0.9) == pytest.approx(38_000)
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.Adam([p], lr=0.1)
    (3 * p[0] - 0.5 * p[1]).backward()  # g = (3, -0.5)
    opt.step()
    assert mod.adam_preconditioner(opt).tolist() == pytest.approx([0.1 * (3 + 1e-8), 0.1 * (0.5 + 1e-8)])
    a = torch.tensor([[2.0, 1.0], [1.0, -4.0]])  # eigenvalues -1 -+ sqrt(10)
    theta, (low, y), resid = mod.lanczos(lambda v: a @ v, torch.tensor([1.0, 1.0]), 2)
    assert theta.tolist() == pytest.approx([-1 - 10 ** 0.5, -1 + 10 ** 0.5], rel=1e-6) and resid < 1e-6
    assert (a @ y).allclose(theta[-1] * y, atol=1e-5) and (a @ low).allclose(theta[0] * low, atol=1e-5)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=torch.Generator().manual_seed(0)))
    b = q @ torch.diag(torch.linspace(-5.0, 3.0, 40)) @ q.T  # both ends from 12 of 40 steps, roughly
    theta, (_, y), resid = mod.lanczos(lambda v: b @ v, torch.ones(40), 12)
    assert theta[0] == pytest.approx(-5, rel=0.05) and theta[-1] == pytest.approx(3, rel=0.1)
    assert float((b @ y - theta[-1] * y).norm()) / theta[-1] == pytest.approx(resid, rel=1e-3)
    data = tiny_dataset(tmp_path / "data")
    cfg = dc.replace(tiny_config(data, tmp_path / "cache"), bituning=BiTuningConfig(prefix="mformer", n_prefix=4),
                     optim=OptimConfig(batch_size=8, lr=1e-3))
    monkeypatch.setattr(sys.modules["bench_divergence"], "run_config", lambda variant, args: cfg)  # its cases' configs
    assert [mod.weight_group(n) for n in ("mformer.router.weight", "mformer.blocks.0.ff.0.bias", "prefix", "suffix.w")] \
        == ["router", "blocks.0.ff", "prefix", "suffix"]
    ds, model, histories, targets, _, batches = mod.run_start(cfg)
    table = model.embed_items(ds.n_items, cfg.item_batch_size)
    params = [q for q in model.parameters() if q.requires_grad]
    # near-zero second moments: 0.8^2 of a unit vector's mass on the one entry under 1% of the median P
    assert mod.low_p_share(torch.tensor([1.0, 1.0, 1.0, 1e-3]), torch.tensor([0.6, 0.0, 0.0, 0.8])) \
        == pytest.approx(0.64)
    # expert by expert: a vector on expert 1's queries alone, whose P is half the median (of all-ones elsewhere)
    sizes = [q.numel() for q in params]
    at = [name for name, q in model.named_parameters() if q.requires_grad].index("mformer.queries")
    k, per = params[at].shape[0], params[at][0].numel()
    start = sum(sizes[:at]) + per
    pre, vec = torch.ones(sum(sizes)), torch.zeros(sum(sizes))
    pre[start:start + per], vec[start:start + per] = 0.5, per ** -0.5
    assert k > 2 and mod.leading_expert(model, params, pre, vec) == pytest.approx((1, 1.0, 0.5))
    assert mod.expert_cell((1, 0.62, 0.004)) == "e1 62%, P 0.004x" and mod.expert_cell(None) == "—"
    # the queries' mean row std (what their LayerNorm divides by): rows (1, -1) and (2, -2) have std 1 and 2
    hand = argparse.Namespace(mformer=argparse.Namespace(queries=torch.tensor([[[1.0, -1.0], [2.0, -2.0]]])))
    assert mod.query_std(hand) == pytest.approx(1.5) and mod.query_std(argparse.Namespace()) is None
    assert mod.option_flag(argparse.Namespace(seed=2), "seed") == " --seed 2"
    assert mod.option_flag(argparse.Namespace(seed=0), "seed") == ""
    rows = (histories[:6], targets[:6])
    hv, loss = mod.hessian_matvec(model, params, rows, table)
    assert model.training and loss > 0
    g = torch.Generator().manual_seed(1)
    n = sum(q.numel() for q in params)
    u, v = torch.randn(n, generator=g), torch.randn(n, generator=g)
    hv_v = hv(v)
    assert float(u @ hv_v) == pytest.approx(float(v @ hv(u)), rel=1e-3)

    def grad_at(shift: float) -> torch.Tensor:  # the gradient with every weight moved by shift * v
        with torch.no_grad():
            for q, d in zip(params, torch.split(shift * v, [q.numel() for q in params])):
                q.add_(d.view_as(q))
        model.eval()
        model.backbone.autocast = False
        out = torch.cat([x.flatten() for x in torch.autograd.grad(
            model(rows[0], torch.as_tensor(rows[1]), table).loss, params)])
        with torch.no_grad():
            for q, d in zip(params, torch.split(shift * v, [q.numel() for q in params])):
                q.sub_(d.view_as(q))
        return out

    fd = (grad_at(1e-3) - grad_at(-1e-3)) / 2e-3
    assert float((fd - hv_v).norm() / fd.norm()) < 0.02
    args = argparse.Namespace(steps=3, at={1, 3}, iters=4, rows=5)
    r = mod.measure("main-lr0.001", args)
    assert [q["step"] for q in r["points"]] == [1, 3] and r["n_params"] == n
    assert all(q["vs_threshold"] == pytest.approx(q["sharpness"] / 38_000) for q in r["points"])
    assert all(q["lowest"] <= q["sharpness"] and q["resid"] >= 0 for q in r["points"])
    assert all(0 < sum(m for _, m in q["groups"]) <= 1 + 1e-6 for q in r["points"])
    assert all(0 <= q["low_p_top"] <= 1 + 1e-6 and 0 <= q["low_p"] < 0.5 for q in r["points"])
    assert all(0 <= q["expert_top"][0] < k and 0 < q["expert_top"][1] <= 1 + 1e-6 for q in r["points"])
    text = mod.report([r], argparse.Namespace(threads=1, steps=3, at=[1, 3], iters=4, rows=5))
    assert f"| M-Former | 0.001 | {n:,} | 3 |" in text and "--cases" not in text
    assert "--rows 5 --cases main-lr0.001` on" in mod.report(
        [r], argparse.Namespace(threads=1, steps=3, at=[1, 3], iters=4, rows=5, cases=["main-lr0.001"]))
    later = r["points"][1]["vs_threshold"]  # the summary leaves step 1 out
    assert f"| M-Former | 0.001 | 1 | {int(later > 1)} | {later:.3f} | {later:.3f} |" in text


def test_eval_unfinished_evaluates_the_best_epoch_as_the_trainer_does(monkeypatch, tmp_path, capsys):
    """eval_unfinished.py on a run's checkpoint gives the test metrics the trainer reported for the same selected
    epoch (here a finished run, whose checkpoint holds that epoch); it has --help and names a missing checkpoint."""
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec
    from laser_repro.laser.tiny import tiny_dataset

    mod = _script(monkeypatch, "eval_unfinished")
    with pytest.raises(SystemExit) as stop:
        mod.main(["--help"])
    assert stop.value.code == 0 and "best-so-far epoch" in capsys.readouterr().out
    data = tiny_dataset(tmp_path / "data")
    small = {"hidden": 16, "max_len": 8, "inner": 32}
    run = tmp_path / "run"
    record = train_idrec(IDRecRunConfig(dataset=str(data), model="sasrec", max_epochs=3, batch_size=64,
                                        progress=False, model_config=small), run)
    assert mod.main(["sasrec", str(run), "--data", str(data), "--model-config", json.dumps(small)]) == 0
    out = json.loads((run / "unfinished_eval.json").read_text())
    assert out["test"] == pytest.approx(record["test"], abs=1e-12) and out["best_epoch"] == record["best_epoch"]
    with pytest.raises(SystemExit, match="checkpoint.pt: missing; expected the checkpoint of a train-idrec run"):
        mod.main(["sasrec", str(tmp_path / "nothing"), "--data", str(data)])


def test_idrec_compile_summary_and_report_on_hand_values(monkeypatch):
    """bench_idrec_compile.py's arithmetic: medians after the warm-up, compilation = first compiled step less an eager
    step, the largest relative loss difference, and training minutes = epochs x batches x s/step / 60."""
    mod = _script(monkeypatch, "bench_idrec_compile")
    eager = {"times": [0.9, 0.6, 0.5, 0.4, 0.5], "losses": [8.0, 7.0, 6.0, 5.0, 4.0], "batches": 22}
    comp = {"times": [170.5, 5.0, 0.25, 0.2, 0.3], "losses": [8.0, 7.0, 6.0, 5.0, 4.002], "batches": 22}
    r = mod.summary("fdsa", eager, comp, 2, [71, 100])
    assert r["eager_s"] == 0.5 and r["compiled_s"] == 0.25 and r["speedup"] == 2.0
    assert r["compile_s"] == pytest.approx(170.0) and r["loss_rel_diff"] == pytest.approx(0.0005)
    assert r["train_min"] == pytest.approx([71 * 22 * 0.5 / 60, 71 * 22 * 0.25 / 60, 100 * 22 * 0.5 / 60,
                                            100 * 22 * 0.25 / 60])
    text = mod.report([r, mod.summary("zesrec", eager, comp, 2, [])], 2, 2)
    assert "| fdsa | 5 | 0.500 | 0.250 | 2.00x | 170 | 5.0e-04 | 13.0-18.3 | 6.5-9.2 |" in text
    assert "| zesrec | 5 |" in text and text.rstrip().endswith("| — | — |")
