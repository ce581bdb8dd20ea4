"""Benchmark: does ``torch.compile`` bring an ID model's training step under the 10-minute target (issue 12)?

For each model, seed 0's run under its Table 2 benchmark protocol (``bench_idrec_flops.setup``: the model as the
trainer builds it, epoch 1's batches of real Scientific): ``--steps`` training steps eager, then the same steps from
the same initial weights with the forward and loss compiled (inductor, ``fallback_random=True`` so that dropout
draws eager's masks from the same seed). Reports the median step time of each after ``--warmup`` steps, the
first compiled step's time (compilation), the largest relative difference of the two runs' losses, and what the
speed-up would make of the model's runs (the epochs to early stopping of its finished benchmark runs, training only).

    python benchmarks/bench_idrec_compile.py --models fdsa zesrec --threads 2

A measurement of a lead; the trainer does not compile.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench_idrec_flops import setup

REPO = Path(__file__).resolve().parents[1]
REPORT = Path(__file__).with_name("idrec_compile.md")


def run_steps(model_name: str, data: Path, cache: Path, steps: int, compiled: bool) -> dict:
    """Step times and losses of ``steps`` training steps from seed 0's initial weights, eager or compiled."""
    import torch

    cfg, _, model, X, y, batches, rng = setup(model_name, data, cache)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    loss_of = lambda t, g: model.batch_loss(t, g, rng)  # noqa: E731
    if compiled:
        import torch._inductor.config as inductor

        inductor.fallback_random = True
        loss_of = torch.compile(loss_of)
    torch.manual_seed(0)
    times, losses = [], []
    for idx in batches[:steps]:
        t = time.perf_counter()
        loss = loss_of(torch.as_tensor(X[idx]), torch.as_tensor(y[idx]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))
    return {"times": times, "losses": losses, "batches": len(batches)}


def summary(model_name: str, eager: dict, comp: dict, warmup: int, epochs: list[int]) -> dict:
    e, c = statistics.median(eager["times"][warmup:]), statistics.median(comp["times"][warmup:])
    diff = max(abs(a - b) / abs(a) for a, b in zip(eager["losses"], comp["losses"]))
    out = {"model": model_name, "eager_s": e, "compiled_s": c, "speedup": e / c, "compile_s": comp["times"][0] - e,
           "loss_rel_diff": diff, "steps": len(eager["times"]), "epochs": epochs}
    if epochs:
        out["train_min"] = [n * eager["batches"] * s / 60 for n in (min(epochs), max(epochs)) for s in (e, c)]
    return out


def report(rows: list[dict], threads: int, warmup: int) -> str:
    from laser_repro.runinfo import cpu_model

    lines = [
        "# ID models: torch.compile against the 10-minute target (issue 12)",
        "",
        f"Written by `python benchmarks/bench_idrec_compile.py --threads {threads}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, fp32. Seed 0's run of each model "
        "(its Table 2 benchmark protocol, epoch 1's batches of real Scientific, 2,048 rows each): the same steps "
        "eager and with the forward and loss under `torch.compile` (inductor, `fallback_random=True`: eager's "
        f"dropout masks). Step times: the median after {warmup} warm-up steps. Compilation: the first compiled step "
        "less an eager step. Training minutes: the seeds' fewest and most epochs to early stopping (the finished "
        "runs of `bench_idrec_scientific.py`) times the epoch's batches times the step, validation not counted.",
        "",
        "| model | steps | eager s/step | compiled s/step | speed-up | compilation (s) | max rel. loss diff | "
        "training min, eager | training min, compiled |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        t = r.get("train_min")
        span = (f"{t[0]:.1f}-{t[2]:.1f}", f"{t[1]:.1f}-{t[3]:.1f}") if t else ("—", "—")
        lines.append(f"| {r['model']} | {r['steps']} | {r['eager_s']:.3f} | {r['compiled_s']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['compile_s']:.0f} | {r['loss_rel_diff']:.1e} | {span[0]} | {span[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "benchmarks" / "out" / "data" / "scientific",
                   help="prepared Scientific (bench_idrec_scientific.py prepares it)")
    p.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "out" / "flops", help="text-feature cache")
    p.add_argument("--models", nargs="+", default=["fdsa", "zesrec"], choices=["sasrec", "bert4rec", "fdsa", "zesrec"])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--steps", type=int, default=8, help="training steps per variant (at most an epoch's)")
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the medians")
    p.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "out" / "idrec_scientific",
                   help="bench_idrec_scientific.py's run folders (else its committed records): epochs to early stop")
    p.add_argument("--report", type=Path, default=REPORT)
    args = p.parse_args(argv)
    if args.steps <= args.warmup:
        p.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    import torch

    from bench_idrec_flops import RECORDS, epochs_to_stop
    from laser_repro.io import write_text

    torch.set_num_threads(args.threads)
    rows = []
    for m in args.models:
        eager = run_steps(m, args.data, args.cache, args.steps, compiled=False)
        comp = run_steps(m, args.data, args.cache, args.steps, compiled=True)
        rows.append(summary(m, eager, comp, args.warmup, epochs_to_stop(args.runs / m, RECORDS / m)))
        print(rows[-1], flush=True)
    write_text(args.report, report(rows, args.threads, args.warmup))
    print(args.report.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
