"""Benchmark: Laser's no-grad throughput on CPU against the batch size (issue 11: size evaluation and
item-refresh batches for throughput).

For each backbone, on real Scientific when ../shared/data is there: items per second of the item
refresh (``LaserModel.embed_items``) over ``--items`` items, and users per second of evaluation's user
embedding (``LaserModel.embed_users``) over ``--users`` test users, at each batch size, next to the
run config's sizes on CPU (``eval_batch_size``, ``item_batch_size``; 0 = ``laser.config.NO_GRAD_BATCH``).
Both are execution keys: they never change a run's results beyond bf16 rounding, so the default may
follow the fastest size.

    python benchmarks/bench_laser_batches.py --threads 2 --backbones minilm smollm2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench_laser_cpu import config, load_data, timed
from laser_repro.laser import trainer
from laser_repro.laser.config import no_grad_batch

HERE = Path(__file__).resolve().parent
SIZES = (8, 16, 32, 64, 128, 256)


def sweep(ds, backbone: str, cache: str, n_items: int, n_users: int) -> dict:
    torch.manual_seed(0)
    model = trainer.build_model(config(backbone, cache), ds, torch.device("cpu"))
    model.eval()
    n_items = min(n_items, ds.n_items)
    users = [ds.history_and_target(int(u), "test")[0] for u in ds.eval_users("test")[:n_users]]
    model.embed_items(min(64, n_items), 32)  # one warm-up of each path, then one timed pass per size
    model.embed_users(users[:32], 32)
    items = {b: n_items / timed(lambda b=b: model.embed_items(n_items, b), 1, warm_up=False) for b in SIZES}
    evals = {b: len(users) / timed(lambda b=b: model.embed_users(users, b), 1, warm_up=False) for b in SIZES}
    return {"items": items, "users": evals, "n_items": n_items, "n_users": len(users)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbones", nargs="+", default=["minilm", "smollm2"])
    ap.add_argument("--items", type=int, default=512, help="items embedded per timing (SmolLM2: half)")
    ap.add_argument("--users", type=int, default=256, help="test users embedded per timing (SmolLM2: half)")
    ap.add_argument("--cache", default=str(HERE / "out" / "cache"))
    ap.add_argument("--out", type=Path, default=HERE / "laser_batches.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds, data_name = load_data()
    cfg = config(args.backbones[0], args.cache)  # the run config's sizes, resolved for the CPU as a run does
    defaults = {k: no_grad_batch(getattr(cfg, f"{k}_batch_size"), k, "cpu") for k in ("item", "eval")}
    lines = [
        "# Laser's no-grad throughput on CPU against the batch size",
        "",
        f"Written by `benchmarks/bench_laser_batches.py --threads {args.threads}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Data: {data_name}. Each cell: one timed pass after one "
        "warm-up of each path; bf16 autocast; no-grad batches left-padded to a multiple of 32 positions. Defaults: "
        f"`item_batch_size` {defaults['item']}, `eval_batch_size` {defaults['eval']} on CPU (marked *).",
        "",
        "| backbone | what | " + " | ".join(f"batch {b}" for b in SIZES) + " |",
        "|---|---|" + "---:|" * len(SIZES),
    ]
    for backbone in args.backbones:
        scale = 2 if backbone == "smollm2" else 1  # 8x the FLOPs of MiniLM per token
        r = sweep(ds, backbone, args.cache, args.items // scale, args.users // scale)
        print(backbone, r, flush=True)
        for what, key, default in (("item refresh, items/s", "items", defaults["item"]),
                                   ("evaluation, users/s", "users", defaults["eval"])):
            best = max(r[key].values())
            cells = [f"{v:.1f}{'*' if b == default else ''}{' (best)' if v == best else ''}" for b, v in r[key].items()]
            lines.append(f"| {backbone} | {what} ({r['n_' + key]}) | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
