"""benchmarks/bench_laser_scientific.py keeps what it computed: committed records of finished runs, and the
previous report's lines for runs that are neither here nor recorded (never a silent gap)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

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


def _load(monkeypatch, tmp_path, name="bench_laser_scientific"):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import records (and bench_laser_cpu)
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
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


def test_a_test_against_a_run_without_ranks_names_the_lost_ranks_not_a_missing_run(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    mod.REPORT.write_text(OLD)  # no-prefix (minilm) reported there, before records were kept
    rec = tmp_path / "records" / "main"
    rec.mkdir(parents=True)
    test = {"n": 3, "recall@10": 0.1, "ndcg@10": 0.05, "mrr": 0.04}
    (rec / "metrics.json").write_text(json.dumps({
        "config": {"max_train_users": 1000}, "train_rows": 3107, "valid": {"n": 1000}, "test": test,
        "best_phase": 2, "best_epoch": 0, "wall_time_s": 600.0, "untrained_valid": {"ndcg@10": 0.01},
        "history": [{"phase": 1, "epoch": 0, "loss": 8.4, "valid": {"ndcg@10": 0.02}}]}))
    np.savez(rec / "ranks.npz", test_users=np.arange(3), test_targets=np.arange(3), test_ranks=np.array([0, 5, 20]))
    text = mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs"))
    assert "| Laser (M-Former prefix + suffix) | minilm | 1000 (seeded) | 3107 | 1000 | 3 | 2, 0 | 10.00 |" in text
    # the old main-vs-no-prefix test is not kept (main is new), and no-prefix did run: its ranks are what is missing
    assert ("| main vs no-prefix | — | — | — | — | no per-user ranks of no-prefix (run before records were kept) |"
            in text)
    assert "| main vs bert4rec | — | — | — | — | not run |" in text  # bert4rec is nowhere: a plain gap
    mod.REPORT.write_text(text)
    assert mod.report(argparse.Namespace(idrec_run=tmp_path / "none", runs=tmp_path / "runs")) == text


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


def test_write_report_refuses_to_blank_a_result(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import pytest
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
    args = argparse.Namespace(runs=tmp_path / "runs", report=tmp_path / "report.md")
    text = mod.report(args)
    assert "| kar | template knowledge, MiniLM-L6 encoder | 1 | 11039 | 13.07 | 9.38 | 8.72 |" in text
    assert "| lrurec | — (ID model) | 0 | — | not run | not run | not run |" in text


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
    again = kept_sections("# Laser CPU speed\n\nWritten by x. Machine: Other CPU (x86_64).\n\n| t |\n\n" + kept, "AMD EPYC, avx512_bf16")
    assert again.count("### An earlier run") == 2 and again.count(MACHINES) == 1  # a third CPU: both kept
    assert kept_sections("", "AMD EPYC, avx512_bf16") == ""


def test_diagnostics_are_computed_once_per_checkpoint(monkeypatch, tmp_path):
    mod = _load(monkeypatch, tmp_path)
    run, record = tmp_path / "runs" / "v", tmp_path / "records" / "v"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    (run / "checkpoint.pt").write_bytes(b"")
    calls = []
    monkeypatch.setattr(mod, "diagnose", lambda folder: calls.append(folder) or {"item_cos_mean": 0.5})
    assert mod.diagnostics(run, record) == {"item_cos_mean": 0.5} and calls == [run]
    assert mod.diagnostics(run, record) == {"item_cos_mean": 0.5} and calls == [run]  # cached in the record
    os.utime(run / "checkpoint.pt", (time.time() + 10, time.time() + 10))  # a newer checkpoint: computed again
    mod.diagnostics(run, record)
    assert calls == [run, run]


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
                                                  "elsewhere": "/data/x"}))
    np.savez(run / "ranks.npz", test_ranks=np.arange(3))
    assert mod.keep_record(run, tmp_path / "records" / "x")
    assert json.loads((tmp_path / "records" / "x" / "metrics.json").read_text()) == {
        "config": {"dataset": "benchmarks/out/data/scientific", "seeds": ["benchmarks/out/data/scientific"],
                   "lr": 0.001}, "elsewhere": "/data/x"}


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
