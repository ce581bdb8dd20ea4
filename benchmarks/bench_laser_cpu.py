"""CPU speed of Laser against its own backbone and the machine's matmul peak, measured in one run.

    python benchmarks/bench_laser_cpu.py [--threads 2] [--steps 6] [--backbones minilm smollm2]

On the real Scientific data (../shared/data; synthetic otherwise), for each backbone it measures,
in the same process and on the same batches of real training rows (batch 8, rows bucketed by
length, the CPU M-Former below):

* the bf16 and fp32 peak of a 2048^2 matmul (GFLOP/s);
* the bare backbone step: forward + backward to ``inputs_embeds`` of the rows' embeddings
  (prefix and suffix positions included), under bf16 autocast and in fp32;
* the whole Laser training step (collaborative encoder, M-Former, backbone, loss over all items,
  backward, Adam) under bf16 autocast;
* item refresh items/s and evaluation users/s;
* FLOP/s of the bare step (``laser_repro.laser.flops``) against the bf16 matmul peak.

Targets (issue 11): the whole step >= 60% of the bare step's rows/s; the bare step >= 30% of the
bf16 peak. With ``--check-precision`` it also trains a short run in fp32 and in bf16 and compares
the metrics. Writes benchmarks/laser_cpu.md (keeping bench_laser_smoke.py's section).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from laser_repro.data.dataset import SeqDataset
from laser_repro.laser import trainer
from laser_repro.laser.config import LaserRunConfig, MFormerConfig, OptimConfig, PhaseConfig
from laser_repro.laser.flops import dims, forward_flops_per_token, nonembedding_parameters, step_flops
from laser_repro.io import write_text
from laser_repro.runinfo import cpu_model

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "amazon-scientific-recformer"
# Paper counts (K 8, top-3, L 32) at a CPU-sized width and depth: the M-Former of the real-data runs.
CPU_MFORMER = MFormerConfig(n_experts=8, top_k=3, n_queries=32, d_model=128, n_layers=2, n_heads=4, intermediate=512)
BATCH = 8
# Sections of the report this script keeps when it rewrites the rest, in this order: earlier machines' figures (a
# run on another CPU is moved there, see kept_sections) and bench_laser_smoke.py's section.
MACHINES, MACHINE_END, SMOKE = "<!-- machines:start -->", "<!-- machines:end -->", "<!-- smoke:start -->"


def load_data() -> tuple[SeqDataset, str]:
    if SHARED.is_dir():
        from laser_repro.data.sources import recformer

        return recformer.prepare(SHARED, "scientific"), "Scientific (real, RecFormer format)"
    from laser_repro.data.sources import synthetic

    return synthetic.prepare(Path(tempfile.mkdtemp()) / "raw", "synthetic"), "synthetic (embedded default)"


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 10, rounds: int = 5) -> float:
    """GFLOP/s of an ``n`` x ``n`` matmul in ``dtype``: the best of ``rounds`` rounds of ``reps`` products after
    3 warm-up products. The rate of one round moves by up to 2x between runs on a shared machine (bf16: 485-1,112
    measured on 2026-12-01); the best round is the peak the targets are measured against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def timed(fn, reps: int, warm_up: bool = True) -> float:
    """Seconds per call of ``fn`` over ``reps`` calls, after one untimed call unless ``warm_up`` is False."""
    if warm_up:
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def attention_time_share(step, reps: int) -> float:
    """Share of ``step``'s operator time spent in SDPA kernels (forward and backward; torch profiler)."""
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(reps):
            step()
    ops = prof.key_averages()
    total = sum(o.self_cpu_time_total for o in ops)
    return sum(o.self_cpu_time_total for o in ops if "scaled_dot_product" in o.key) / max(total, 1e-9)


def config(backbone: str, cache: str, precision: str = "auto", **kw) -> LaserRunConfig:
    return LaserRunConfig(backbone=backbone, cache_dir=cache, mformer=CPU_MFORMER, backbone_precision=precision,
                          optim=OptimConfig(batch_size=BATCH, lr=1e-3), progress=False, **kw)


def bare_steps(bb, shapes: list[tuple[int, int]], std: float):
    """A bare backbone step (forward + backward to ``inputs_embeds``), cycling through the batch ``shapes``."""
    shape_it = itertools.cycle(shapes)

    def step() -> None:
        b, t = next(shape_it)
        x = (torch.randn(b, t, bb.hidden_size) * std).requires_grad_(True)
        bb(x, torch.ones(b, t, dtype=torch.long))[:, -1].float().sum().backward()

    return step


def bench(ds: SeqDataset, backbone: str, steps: int, cache: str) -> dict:
    from laser_repro.idrec.encoder import random_collaborative_encoder  # noqa: F401 (build_model uses it)

    torch.manual_seed(0)
    model = trainer.build_model(config(backbone, cache), ds, torch.device("cpu"))
    bb = model.backbone
    users = np.flatnonzero(ds.train_len >= 3)[:3000]
    hist, tgt = trainer.training_rows(ds, users, 2)
    rng = np.random.default_rng(0)
    lengths = np.array([len(t) for t in model.tokens(hist)])
    batches = trainer.batch_order(len(hist), BATCH, 32, rng, lengths)[: steps + 1]
    table = torch.randn(ds.n_items, bb.hidden_size)
    opt, _ = trainer.make_optimizer(model.cfg, model, steps)
    model.train()
    it = iter(batches * 3)

    def laser_step() -> None:
        idx = next(it)
        out = model([hist[i] for i in idx], torch.as_tensor(tgt[idx]), table)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_laser = timed(laser_step, steps)
    extra = model.prefix_len + model.suffix_len
    row_tokens = float(np.mean([lengths[b].mean() for b in batches])) + extra
    # the bare backbone on the same shapes: embeddings of the rows' tokens plus prefix/suffix vectors
    shapes = [(len(b), int(lengths[b].max()) + extra) for b in batches]
    out, std = {}, bb.embedding_std  # (a property that reads the whole token table: once, outside the timing)
    for precision in ("bf16", "fp32"):
        bb.autocast = precision == "bf16"
        out[precision] = timed(bare_steps(bb, shapes, std), steps)
    bb.autocast = True
    attention_share = attention_time_share(bare_steps(bb, shapes, std), steps)
    layers, width = dims(bb.model.config)
    n = nonembedding_parameters(bb.model)
    mean_t = float(np.mean([t for _, t in shapes]))
    step_fl = step_flops(int(BATCH * mean_t), forward_flops_per_token(n, layers, width, int(mean_t)))
    model.eval()
    n_items = min(512, ds.n_items)
    t_refresh = timed(lambda: model.embed_items(n_items, 128), 1)
    eval_users = [ds.history_and_target(int(u), "test")[0] for u in ds.eval_users("test")[:512]]
    t_eval = timed(lambda: model.embed_users(eval_users, 64), 1)
    return {
        "whole_rows_per_s": BATCH / t_laser,
        "bare_bf16_rows_per_s": BATCH / out["bf16"],
        "bare_fp32_rows_per_s": BATCH / out["fp32"],
        "bare_bf16_gflops": step_fl / out["bf16"] / 1e9,
        "items_per_s": n_items / t_refresh,
        "eval_users_per_s": len(eval_users) / t_eval,
        "row_tokens": row_tokens,
        "nonembedding_params": n,
        "step_flops": step_fl,
        "attention_share": attention_share,
    }


def precision_check(ds: SeqDataset, cache: str, out_root: Path) -> dict:
    """A short real run in fp32 and in bf16 (same seed, data and schedule): how far apart are the metrics?"""
    res = {}
    for precision in ("fp32", "bf16"):
        cfg = config("minilm", cache, precision, dataset=str(out_root / "data"), max_train_users=150,
                     max_eval_users=500, phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=1),
                     num_threads=torch.get_num_threads())
        res[precision] = trainer.train_laser(cfg, out_root / precision)
    return res


def same_model_precision(run: Path, n_rows: int = 32) -> dict:
    """The fp32 run's selected model evaluated again under bf16 autocast, nothing retrained: test metrics,
    per-user NDCG@10 (paired t-test), how many users' target rank moved, and one fixed batch's loss. This
    isolates bf16 rounding; the two short runs above also differ by the training trajectories it changes."""
    import dataclasses
    import json

    from laser_repro.artifacts.significance import paired_ttest
    from laser_repro.data.dataset import load_dataset
    from laser_repro.eval.metrics import per_user_metrics
    from laser_repro.train.scaffold import recorded_config

    rec = json.loads((run / "metrics.json").read_text())
    base = recorded_config(LaserRunConfig, rec)
    ds = load_dataset(base.dataset)
    users = trainer.eval_users(ds, "test", base)
    hist, tgt = trainer.training_rows(ds, trainer.training_users(ds, base), base.min_train_history)
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = dataclasses.replace(base, backbone_precision=precision)
        torch.manual_seed(0)
        model = trainer.build_model(cfg, ds, torch.device("cpu"))
        model.load_trainable_state(torch.load(run / "model.pt", map_location="cpu", weights_only=False)["trainable"])
        model.eval()
        with torch.no_grad():
            table = model.embed_items(ds.n_items, cfg.item_batch_size)
            res = trainer.evaluate_split(model, ds, users, "test", table, cfg)
            loss = float(model(hist[:n_rows], torch.as_tensor(tgt[:n_rows]), table).loss)
        out[precision] = {"metrics": res.metrics, "ranks": res.ranks, "loss": loss}
    a, b = out["fp32"], out["bf16"]
    test = paired_ttest(per_user_metrics(a["ranks"])["ndcg@10"], per_user_metrics(b["ranks"])["ndcg@10"])
    return {"fp32": a["metrics"], "bf16": b["metrics"], "loss_fp32": a["loss"], "loss_bf16": b["loss"],
            "rank_moved": float((a["ranks"] != b["ranks"]).mean()), "n": int(len(users)), "p": test.p}


PRECISION = "fp32 vs bf16 autocast on a short real run"  # the --check-precision section


def kept_sections(previous: str, cpu: str, measured: tuple[str, ...] = ("minilm", "smollm2", PRECISION)) -> str:
    """What a rewrite keeps of the ``previous`` report: its machines and smoke sections; and, when ``previous`` was
    measured on another CPU than ``cpu`` or measured something this run does not (``measured``: its backbones, and
    ``PRECISION`` with ``--check-precision``), its measured sections too, moved into the machines section (demoted
    headings), so no machine's or run's figures are lost."""
    top_end = min([previous.index(m) for m in (MACHINES, SMOKE) if m in previous] or [len(previous)])
    top, tail = previous[:top_end].strip(), previous[top_end:]
    line = next((x for x in top.splitlines() if x.startswith("Written by")), "")
    rows = {x.split("|")[1].strip() for x in top.splitlines() if x.startswith("| ") and not x.startswith("| backbone")}
    had = {b for b in rows if b in ("minilm", "smollm2")} | ({PRECISION} if f"## {PRECISION}" in top else set())
    if not top or (f"Machine: {cpu} (" in line and had <= set(measured)):
        return tail
    moved = "\n".join("##" + x if x.startswith("#") else x for x in top.splitlines()[1:]).strip()
    if MACHINES not in tail:
        tail = f"{MACHINES}\n## Earlier machines\n{MACHINE_END}\n" + ("\n" + tail if tail else "")
    i = tail.index(MACHINE_END)
    return tail[:i] + "\n### An earlier run\n\n" + moved + "\n" + tail[i:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    ap.add_argument("--backbones", nargs="+", default=["minilm", "smollm2"])
    ap.add_argument("--check-precision", action="store_true", help="also train a short fp32 and bf16 run (~10 min)")
    ap.add_argument("--cache", default=str(HERE / "out" / "cache"))
    ap.add_argument("--out", type=Path, default=HERE / "laser_cpu.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds, data_name = load_data()
    peaks = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print("matmul GFLOP/s", peaks, flush=True)
    rows = []
    for backbone in args.backbones:
        r = bench(ds, backbone, args.steps, args.cache)
        rows.append((backbone, r))
        print(backbone, {k: round(v, 2) for k, v in r.items()}, flush=True)
    load = os.getloadavg()
    lines = [
        "# Laser CPU speed",
        "",
        f"Written by `benchmarks/bench_laser_cpu.py --threads {args.threads} --steps {args.steps}"
        f"{' --check-precision' if args.check_precision else ''}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Data: {data_name}. Machine: {cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, "
        f"torch {torch.__version__}, "
        f"{args.threads} torch threads; load average {load[0]:.1f} at the end.",
        "",
        f"Every figure comes from this run. Matmul peak (2048², {args.threads} threads, best of 5 rounds): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s. Rows are real training rows (batch {BATCH}, bucketed by length), with "
        "the M-Former of the real-data runs (K 8, top-3, L 32, d_m 128, Z 2) and one suffix vector.",
        "",
        "| backbone | tokens/row | whole Laser step rows/s (bf16) | bare backbone step rows/s (bf16 / fp32) | "
        "whole / bare | bare GFLOP/s (bf16) | bare / bf16 peak | item refresh items/s | evaluation users/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for backbone, r in rows:
        ratio = r["whole_rows_per_s"] / r["bare_bf16_rows_per_s"]
        share = r["bare_bf16_gflops"] / peaks["bf16"]
        lines.append(f"| {backbone} | {r['row_tokens']:.0f} | {r['whole_rows_per_s']:.1f} | {r['bare_bf16_rows_per_s']:.1f} / "
                     f"{r['bare_fp32_rows_per_s']:.1f} | {100 * ratio:.0f}% | {r['bare_bf16_gflops']:.0f} | "
                     f"{100 * share:.0f}% | {r['items_per_s']:.1f} | {r['eval_users_per_s']:.1f} |")
        verdicts.append(f"{backbone}: whole step {100 * ratio:.0f}% of the bare step (target >= 60%: "
                        f"{'met' if ratio >= 0.6 else 'NOT met'}); bare step {100 * share:.0f}% of the bf16 peak "
                        f"(target >= 30%: {'met' if share >= 0.3 else 'NOT met'}); bf16 autocast speeds the bare step up "
                        f"{r['bare_bf16_rows_per_s'] / r['bare_fp32_rows_per_s']:.1f}x over fp32; attention (SDPA "
                        f"forward and backward, fp32) takes {100 * r['attention_share']:.0f}% of the bare bf16 step's "
                        "operator time (torch profiler)")
    lines += ["", *[f"- {v}." for v in verdicts], "",
              "FLOPs of the bare step: forward 2 N + 4 n_layers T d per token (N non-embedding parameters: "
              + ", ".join(f"{b} {r['nonembedding_params'] / 1e6:.1f}M" for b, r in rows)
              + "), backward (activation gradients only) one more forward (`laser_repro.laser.flops`)."]
    if args.check_precision:
        with tempfile.TemporaryDirectory() as tmp:
            from laser_repro.data.dataset import save_dataset

            save_dataset(ds, Path(tmp) / "data")
            res = precision_check(ds, args.cache, Path(tmp))
            same = same_model_precision(Path(tmp) / "fp32")
        lines += ["", f"## {PRECISION}", "",
                  "minilm, 150 seeded training users, 500 seeded validation/test users, 1 + 1 epochs, same seed:", "",
                  "| precision | valid N@10 | test R@10 | test N@10 | test MRR | wall s |", "|---|---:|---:|---:|---:|---:|"]
        for p, rec in res.items():
            lines.append(f"| {p} | {rec['valid']['ndcg@10']:.4f} | {rec['test']['recall@10']:.4f} | "
                         f"{rec['test']['ndcg@10']:.4f} | {rec['test']['mrr']:.4f} | {rec['wall_time_s']:.0f} |")
        d = max(abs(res["fp32"]["test"][k] - res["bf16"]["test"][k]) for k in ("recall@10", "ndcg@10", "mrr"))
        lines += ["", f"Largest test-metric difference: {d:.4f} (on 500 users one hit at rank < 10 moves R@10 by 0.002). "
                  "Two trainings differ by more than rounding: bf16 changes every gradient, so the runs follow "
                  "different trajectories. The same model in both precisions isolates the rounding:", "",
                  "| the fp32 run's model, evaluated in | test R@10 | test N@10 | test MRR | loss of one batch |",
                  "|---|---:|---:|---:|---:|"]
        for p in ("fp32", "bf16"):
            m = same[p]
            lines.append(f"| {p} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | {m['mrr']:.4f} | {same['loss_' + p]:.4f} |")
        gap = max(abs(same["fp32"][k] - same["bf16"][k]) for k in ("recall@10", "ndcg@10", "mrr"))
        within = same["p"] > 0.05 or same["p"] != same["p"]  # nan: identical ranks
        lines += ["", f"Same model: {100 * same['rank_moved']:.1f}% of {same['n']} test users' target ranks move; largest "
                  f"metric difference {gap:.4f}; paired t-test on per-user NDCG@10 p = {same['p']:.2g}; loss differs by "
                  f"{abs(same['loss_fp32'] - same['loss_bf16']) / same['loss_fp32']:.2%}. Target (metrics match fp32 "
                  f"within bf16 rounding, read as: no significant per-user difference): "
                  f"{'met' if within else 'NOT met'}."]
    previous = args.out.read_text() if args.out.exists() else ""
    measured = (*args.backbones, *([PRECISION] if args.check_precision else []))
    write_text(args.out, "\n".join(lines) + "\n\n" + kept_sections(previous, cpu_model(), measured))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
