#!/usr/bin/env python
"""Write docs/measurements.md: the paper DAG's job counts, its runs per family, the GPU-time
estimate per family, and the measured wall times of the README's two commands.

Nothing in that file is typed by hand: job counts come from `snakemake -n` on config.yaml, runs
from the experiment model, the GPU estimate from the formula below, and the timings from
docs/timings.json, which `--time-default` / `--time-tests` (re)measure on this machine.

    python scripts/measure_docs.py                      # counts + estimates, keep recorded timings
    python scripts/measure_docs.py --time-default       # also time the embedded default (a fresh copy)
    python scripts/measure_docs.py --time-tests         # also time the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from laser_repro.experiment import registry  # noqa: E402
from laser_repro.experiment.plan import ARTIFACTS, Experiment  # noqa: E402
from laser_repro.paper.reported import load_reported  # noqa: E402

OUT = REPO / "docs" / "measurements.md"
TIMINGS = REPO / "docs" / "timings.json"

# ---- the GPU-time model (analytic: no GPU measurement yet) ---------------------------------
PEAK_FLOPS = 989e12  # H100-class, bf16 dense
BACKBONE_PARAMS = {"gpt2-large": 774e6, "chatglm2-6b": 6.24e9, "llama2-7b": 6.74e9}
MFU = {"gpt2-large": 0.10, "chatglm2-6b": 0.20, "llama2-7b": 0.20}  # GPT2-Large at batch 4 uses the GPU poorly
ROW_TOKENS, ITEM_TOKENS = 250, 60  # instruction + <= 10 items + prefix/suffix; one item
TRAIN_COST = 2.0  # a training row through the frozen LLM: forward + activation gradients ~ 2 forwards
EPOCHS = 13  # phase 1 early-stops around 8 of <= 15, then phase 2's 5
ASSUMPTIONS = (
    f"one H100-class GPU ({PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 dense); a training row ~{ROW_TOKENS} tokens, an item "
    f"~{ITEM_TOKENS}; a training row costs {TRAIN_COST:g}x a forward pass (activation gradients only); model FLOP "
    "utilisation 20% (10% for GPT2-Large at batch 4); forward tokens/s = peak x MFU / (2 x parameters); "
    f"{EPOCHS} epochs per run, each with a full item refresh and a full validation; rows per epoch = "
    "interactions - 4 x users (every prefix with >= 2 items of the training part); a Figure 3 run on a "
    "fraction f trains f of the rows."
)


GPU_REPORT = REPO / "benchmarks" / "gpu_backbones.json"  # written by benchmarks/gpu_backbones.py on a GPU
MEASURED_AS = {"gpt2-large": "gpt2-large", "llama2-7b": "llama2-7b", "chatglm2-6b": "llama2-7b"}  # same size class


def measured_speeds(path: Path = GPU_REPORT) -> tuple[dict[str, dict], str] | None:
    """The GPU benchmark's results by backbone and its device, when a real (not tiny) run wrote them."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("tiny") or not data.get("results"):
        return None
    return {r["backbone"]: r for r in data["results"]}, data.get("device", "GPU")


def tokens_per_s(backbone: str) -> float:
    """Analytic forward tokens/s (peak x MFU / 2 N)."""
    return PEAK_FLOPS * MFU[backbone] / (2 * BACKBONE_PARAMS[backbone])


def laser_hours(backbone: str, dataset: str, fraction: float = 1.0, measured: dict[str, dict] | None = None) -> float:
    """GPU hours of one Laser run (paper Table 1 sizes): from the GPU benchmark's measured training-step and
    refresh tokens/s when ``measured`` has this backbone's size class, else from the analytic model."""
    stats = load_reported().table1(dataset)
    users, items, inters = (stats[k].value for k in ("users", "items", "interactions"))
    rows = (inters - 4 * users) * fraction
    r = (measured or {}).get(MEASURED_AS.get(backbone, backbone))
    if r is not None:
        per_epoch_s = (rows * ROW_TOKENS / r["train_tokens_per_s"]
                       + (items * ITEM_TOKENS + users * ROW_TOKENS) / r["refresh_tokens_per_s"])
        return EPOCHS * per_epoch_s / 3600
    per_epoch = rows * ROW_TOKENS * TRAIN_COST + items * ITEM_TOKENS + users * ROW_TOKENS
    return EPOCHS * per_epoch / tokens_per_s(backbone) / 3600


# ---- measurements ---------------------------------------------------------------------------
def dry_run_counts() -> dict[str, int]:
    """Job counts per rule of `snakemake -n` on config.yaml (run in a temporary copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("Snakefile", "config.yaml", "workflow", "slurm"):
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, Path(tmp) / name)
        out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules"], cwd=tmp,
                             capture_output=True, text=True, check=True).stdout
    block = out[out.index("Job stats:"):]
    counts = {}
    for line in block.splitlines()[3:]:
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not m:
            break
        counts[m[1]] = int(m[2])
    return counts


def time_command(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, env=env)
    return time.perf_counter() - t0


def machine() -> str:
    from laser_repro.runinfo import cpu_model

    return f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def measure_default() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "clone", "-q", str(REPO), tmp], check=True)
        seconds = time_command([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                                "workflow/default.yaml", "--quiet", "all"], Path(tmp))
    return {"seconds": round(seconds, 1), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "what": "snakemake --cores 2 --configfile workflow/default.yaml on a fresh clone (local executor)"}


def measure_tests() -> dict:
    """The test suite on a fresh clone, as CI runs it (the clone's own package first on the path), made
    next to this checkout so that the real-data tests find ../shared/data as they do here."""
    with tempfile.TemporaryDirectory(dir=REPO.parent, prefix=".measure-tests-") as tmp:
        subprocess.run(["git", "clone", "-q", str(REPO), tmp], check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        seconds = time_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist",
                                "loadgroup"], Path(tmp), env)
        fast = time_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "-m",
                             "not slow"], Path(tmp), env)
    return {"seconds": round(seconds, 1), "fast_seconds": round(fast, 1), "machine": machine(),
            "date": time.strftime("%Y-%m-%d"), "what": "pytest -n 2, the full suite (the README's test command) on a fresh clone"}


# ---- the report -----------------------------------------------------------------------------
def families(exp: Experiment, measured: dict[str, dict] | None = None) -> list[tuple[str, str, int, str, float | None]]:
    """(method, dataset, runs, used by, estimated GPU hours) per (method, dataset)."""
    used: dict[tuple[str, str], Counter] = {}
    for name in ARTIFACTS:
        if name == "compare":
            continue
        for r in exp.runs_of(name):
            used.setdefault((r.method, r.dataset), Counter())[name] += 1
    out = []
    runs = exp.all_runs()
    for (method, dataset), by in sorted(used.items()):
        keys = [r for r in runs if (r.method, r.dataset) == (method, dataset)]
        m = registry.METHODS[method]
        hours = None
        if m.trainer.name == "laser" and m.paper_backbone in BACKBONE_PARAMS:
            hours = 0.0
            for r in keys:
                cfg = exp.resolved(r.dataset, r.method, r.variant, r.seed)
                frac = 1.0 if cfg.train_user_fraction is None else cfg.train_user_fraction
                hours += laser_hours(m.paper_backbone, dataset, frac, measured)
        usage = ", ".join(f"{k} ({v})" for k, v in by.items())
        out.append((method, dataset, len(keys), usage, hours))
    return out


def render(counts: dict[str, int], exp: Experiment, timings: dict) -> str:
    total = counts.get("total", sum(counts.values()))
    trained = sum(counts.get(f"train_{c}", 0) for c in registry.COMPUTE)
    lines = ["# Measurements", "",
             "Written by `python scripts/measure_docs.py` (do not edit by hand). Job counts come from "
             "`snakemake -n` on `config.yaml`; runs from the experiment model; GPU hours from the formula "
             "in the script; wall times from `docs/timings.json`.", "",
             "## The paper DAG (`snakemake -n` on config.yaml)", "",
             "| rule | jobs |", "|---|---:|"]
    lines += [f"| {rule} | {n} |" for rule, n in counts.items() if rule != "total"]
    lines += [f"| **total** | **{total}** |", "",
              "## Training runs per method and data set (all seeds)", "",
              f"The runs some table or figure reads; the DAG trains {trained} in all: also the runs these read that "
              "no artifact reports (LlamaRec's LRURec retrievers).", "",
              "| method | data set | runs | read by (runs) | GPU hours (estimate) |", "|---|---|---:|---|---:|"]
    gpu = measured_speeds()
    measured, device = gpu if gpu else ({}, None)
    grand = 0.0
    for method, dataset, n, usage, hours in families(exp, measured):
        grand += hours or 0.0
        h = "minutes" if registry.METHODS[method].trainer.compute == "small" else (
            "not estimated" if hours is None else f"~{hours:,.0f}")
        lines.append(f"| {registry.METHODS[method].label} | {dataset} | {n} | {usage} | {h} |")
    lines += [f"| **total** | | **{len(exp.all_runs())}** | | **~{grand:,.0f}** |", "",
              "## Estimated GPU hours of one Laser run", ""]
    if measured:
        lines += [f"**From measured throughput** (`benchmarks/gpu_backbones.py` on {device}: tokens/s of a training "
                  "step and of an item refresh at each size class, random weights; ChatGLM2-6B uses the Llama2-7B "
                  f"measurement). Other assumptions: {ASSUMPTIONS}", ""]
    else:
        lines += ["**Analytic estimates, not measurements** (no GPU has run `benchmarks/gpu_backbones.py` yet). "
                  f"Assumptions: {ASSUMPTIONS}", ""]
    lines += ["| backbone (forward tokens/s) | " + " | ".join(d.capitalize() for d in ("scientific", "arts", "pet", "games"))
              + " |", "|---|---:|---:|---:|---:|"]
    for b in BACKBONE_PARAMS:
        cells = " | ".join(f"{laser_hours(b, d, measured=measured):.1f} h" for d in ("scientific", "arts", "pet", "games"))
        r = measured.get(MEASURED_AS[b])
        speed = f"{r['refresh_tokens_per_s'] / 1e3:.0f}k measured" if r else f"~{tokens_per_s(b) / 1e3:.0f}k"
        lines.append(f"| {b} ({speed}) | {cells} |")
    lines += ["", "The SLURM profile asks 48 h for `train_large`; a longer run (Arts/Pet on a 7B backbone) is "
              "resubmitted and continues from its last epoch's checkpoint.", "", "## Wall times of the README's commands", ""]
    if timings:
        lines += ["| command | seconds | minutes | machine | date |", "|---|---:|---:|---|---|"]
        for name, t in timings.items():
            lines.append(f"| {t['what']} | {t['seconds']:.0f} | {t['seconds'] / 60:.1f} | {t['machine']} | {t['date']} |")
            if "fast_seconds" in t:
                lines.append(f"| pytest -m 'not slow' (the developer loop) | {t['fast_seconds']:.0f} | "
                             f"{t['fast_seconds'] / 60:.1f} | {t['machine']} | {t['date']} |")
    else:
        lines.append("Not measured yet: `python scripts/measure_docs.py --time-default --time-tests`.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-default", action="store_true", help="time the embedded default on a fresh clone (~8 min)")
    ap.add_argument("--time-tests", action="store_true",
                    help="time the full test suite and the fast loop on a fresh clone (~20 min)")
    args = ap.parse_args(argv)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    for wanted, key, measure in ((args.time_default, "default", measure_default), (args.time_tests, "tests", measure_tests)):
        if wanted:  # each measurement is saved as it ends: a later failure does not lose it
            timings[key] = measure()
            TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
    exp = Experiment.from_files([REPO / "config.yaml"])
    OUT.write_text(render(dry_run_counts(), exp, timings))
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
