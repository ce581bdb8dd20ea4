"""Benchmark: the compute floor of an ID-model run on real Scientific, against the 10-minute target.

For each model, under the protocol its Table 2 benchmark ran (the registry's settings over the
``IDRecRunConfig`` defaults, seed 0):

- the FLOPs of one training epoch (every batch of epoch 1's order, forward and backward, counted by
  torch's ``FlopCounterMode``: matmuls and attention) and of one full validation evaluation;
- the epochs its finished benchmark runs took to early stopping (``--runs``, all seeds found);
- this machine's matmul peak (2048 x 2048, fp32 and bf16);
- hence the floor: the least time a run could take if every counted FLOP ran at the fp32 peak and
  nothing else (dropout, softmax, layer norms, the optimiser, Python) cost anything;
- next to the measured time per training step and per evaluation on this machine.

    python benchmarks/bench_idrec_flops.py --models zesrec fdsa --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

from records import finished

REPO = Path(__file__).resolve().parents[1]
REPORT = Path(__file__).with_name("idrec_flops.md")
TARGET_MIN = 10.0
MODELS = ("sasrec", "bert4rec", "fdsa", "zesrec")  # one training stage, one loss (RecGURU has two)
RECORDS = REPO / "benchmarks" / "records" / "idrec_scientific"  # bench_idrec_scientific.py's committed records
ANALYSIS = "<!-- analysis: hand-written, kept when the tables above are regenerated -->"


def epochs_to_stop(run_root: Path, record_root: Path) -> list[int]:
    """``epochs_run`` of every finished seed of one model's benchmark runs: its run folders, else their committed
    records (``bench_idrec_scientific.py``'s)."""
    return [json.loads((f / "metrics.json").read_text())["epochs_run"] for f in finished(run_root, record_root)]


def old_epochs(old: str | None, model: str) -> list[int]:
    """The seeds' epochs to early stopping that the previous report gave ``model`` ("89 (78, 92, 98)"), for runs
    from before records were kept: the run-level columns are never blanked for want of the run folders."""
    for line in (old or "").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == model and len(cells) > 4 and "(" in cells[4]:
            return [int(e) for e in cells[4].split("(")[1].rstrip(")").split(",")]
    return []


def setup(model_name: str, data: Path, cache: Path):
    """(cfg, ds, model, X, y, batches, rng) of seed 0's run of ``model_name`` under its Table 2 benchmark protocol:
    the model as the trainer builds it (MiniLM text features) and epoch 1's batches, in the trainer's order."""
    import numpy as np
    import torch

    from bench_idrec_scientific import offline_config

    from laser_repro.config import from_dict
    from laser_repro.data.dataset import load_dataset
    from laser_repro.experiment.config import nest
    from laser_repro.experiment.registry import METHODS
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.registry import build_model, uses_text
    from laser_repro.idrec.trainer import item_text_features, training_instances, training_users

    over = {**METHODS[model_name].base_config(), **offline_config(model_name), "dataset": str(data), "seed": 0}
    cfg = from_dict(IDRecRunConfig, nest(over))  # MiniLM features, as bench_idrec_scientific.py
    ds, device = load_dataset(data), torch.device("cpu")
    cache.mkdir(parents=True, exist_ok=True)
    feats = item_text_features(ds, cfg, cache, device) if uses_text(cfg.model) else None
    torch.manual_seed(0)
    model = build_model(cfg.model, ds.n_items, cfg.model_config, text_features=feats)
    X, y = training_instances(model, ds, training_users(ds, cfg))
    rng = np.random.default_rng([cfg.seed, 1])  # epoch 1's order, as the trainer draws it
    order = rng.permutation(X.shape[0])
    batches = [order[s : s + cfg.batch_size] for s in range(0, X.shape[0], cfg.batch_size)]
    return cfg, ds, model, X, y, batches, rng


def measure(model_name: str, data: Path, runs: Path, cache: Path, time_steps: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from laser_repro.idrec.trainer import eval_inputs, evaluate_model

    cfg, ds, model, X, y, batches, rng = setup(model_name, data, cache)
    device = torch.device("cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()

    def step(idx, count: bool = False) -> float:
        tokens, targets = torch.as_tensor(X[idx]), torch.as_tensor(y[idx])
        counter = FlopCounterMode(display=False) if count else contextlib.nullcontext()
        with counter:
            loss = model.batch_loss(tokens, targets, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        return counter.get_total_flops() if count else 0.0

    train_flops = sum(step(idx, count=True) for idx in batches)
    step(batches[0])  # warm-up after counting
    t = time.perf_counter()
    for idx in batches[1 : 1 + time_steps]:
        step(idx)
    s_per_step = (time.perf_counter() - t) / min(time_steps, len(batches) - 1)

    valid = eval_inputs(ds, "valid", model.history_len)
    with FlopCounterMode(display=False) as fc:
        evaluate_model(model, valid, device, cfg.eval_batch_size, cfg.ties)
    eval_flops = fc.get_total_flops()
    t = time.perf_counter()
    evaluate_model(model, valid, device, cfg.eval_batch_size, cfg.ties)
    eval_s = time.perf_counter() - t
    return {"model": model_name, "instances": int(X.shape[0]), "batch_size": cfg.batch_size, "batches": len(batches),
            "train_tflop": train_flops / 1e12, "eval_tflop": eval_flops / 1e12, "s_per_step": s_per_step,
            "eval_s": eval_s, "epochs": epochs_to_stop(runs / model_name, RECORDS / model_name)}


def report(rows: list[dict], peaks: dict[str, float], threads: int, old: str | None) -> str:
    lines = [
        "# ID models on real Scientific: the compute floor against the 10-minute target",
        "",
        "Generated by `python benchmarks/bench_idrec_flops.py` (counts and times: this file; epochs to early",
        "stopping: the finished runs of `bench_idrec_scientific.py`). FLOPs are torch `FlopCounterMode`'s count",
        "(matmuls and attention, forward and backward) of every batch of epoch 1 and of one validation evaluation",
        f"(all 11,039 users). Matmul peak of this machine ({threads} threads, 2048 x 2048): "
        f"**{peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16**.",
        "",
        "The floor is the time the counted FLOPs of a whole run (every epoch trains and evaluates) would take at",
        "the fp32 peak (the best of 5 rounds) with everything else free: a run cannot be faster than its floor in",
        "fp32 on this machine.",
        "",
        "| Model | batches / epoch | train TFLOP / epoch | eval TFLOP | epochs to early stop (seeds) | run TFLOP |"
        " floor at fp32 peak (min) | at bf16 peak (min) | measured s / step | measured s / epoch | projected run (min)"
        " | achieved GFLOP/s |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        r = {**r, "epochs": r["epochs"] or old_epochs(old, r["model"])}
        per_epoch = r["train_tflop"] + r["eval_tflop"]
        s_epoch = r["s_per_step"] * r["batches"] + r["eval_s"]
        cells = ["—"] * 5
        if r["epochs"]:  # the run-level columns need the finished runs' epochs
            epochs = statistics.mean(r["epochs"])
            run_tflop = per_epoch * epochs
            floor = run_tflop * 1e3 / peaks["fp32"] / 60
            cells = [f"{epochs:.0f} ({', '.join(map(str, r['epochs']))})", f"{run_tflop:.0f}",
                     f"{floor:.1f}" + (" **(> 10)**" if floor > TARGET_MIN else ""),
                     f"{run_tflop * 1e3 / peaks['bf16'] / 60:.1f}", f"{s_epoch * epochs / 60:.1f}"]
        lines.append(
            f"| {r['model']} | {r['batches']} | {r['train_tflop']:.3f} | {r['eval_tflop']:.3f} | {cells[0]} | "
            f"{cells[1]} | {cells[2]} | {cells[3]} | {r['s_per_step']:.2f} | {s_epoch:.1f} | {cells[4]} | "
            f"{per_epoch * 1e3 / s_epoch:.0f} |")
    text = "\n".join(lines) + "\n"
    if old and ANALYSIS in old:
        text += "\n" + old[old.index(ANALYSIS):]
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "benchmarks" / "out" / "data" / "scientific",
                   help="prepared real Scientific (bench_idrec_scientific.py prepares it)")
    p.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "out" / "idrec_scientific",
                   help="the finished benchmark runs, {runs}/{model}/seed~{seed}/metrics.json")
    p.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "out" / "flops",
                   help="where the item-text features are cached")
    p.add_argument("--models", nargs="+", default=["zesrec", "fdsa"], choices=MODELS)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--time-steps", type=int, default=5, help="training steps timed per model")
    p.add_argument("--report", type=Path, default=REPORT)
    args = p.parse_args()
    if not (args.data / "stats.json").exists():
        p.error(f"--data: {args.data} is not a prepared data set (run bench_idrec_scientific.py first)")
    import torch

    from laser_repro.io import write_text

    torch.set_num_threads(args.threads)
    from bench_laser_cpu import matmul_gflops  # the one definition of the machine's peak

    peaks = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    rows = [measure(m, args.data, args.runs, args.cache, args.time_steps) for m in args.models]
    old = args.report.read_text() if args.report.exists() else None
    write_text(args.report, report(rows, peaks, args.threads, old))
    print(args.report.read_text())


if __name__ == "__main__":
    main()
