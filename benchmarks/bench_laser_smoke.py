"""A short real-data Laser run on CPU: MiniLM on Scientific, capped users, both phases.

    python benchmarks/bench_laser_smoke.py                 # prepare Scientific, train, summarise
    python benchmarks/bench_laser_smoke.py --summarize-only --run DIR   # summarise a finished run

Checks the acceptance of issue 4 on this CPU: validation NDCG@10 rises clearly above the
untrained model's, and the log shows one item refresh per phase-1 epoch and none in phase 2.
The summary goes into benchmarks/laser_cpu.md (between the smoke markers). Small M-Former
sizes, lr 1e-3, 150 training users and 300 evaluation users keep it to about an hour on one
busy core; these caps are smoke-run settings, not the paper's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "amazon-scientific-recformer"
START, END = "<!-- smoke:start -->", "<!-- smoke:end -->"
CONFIG = {
    "backbone": "minilm",
    "mformer": {"n_experts": 4, "top_k": 2, "n_queries": 8, "d_model": 64, "n_layers": 2, "n_heads": 2, "intermediate": 128},
    "phases": {"phase1_max_epochs": 2, "phase2_epochs": 1},
    "optim": {"batch_size": 8, "lr": 0.001},
    "max_train_users": 150,
    "max_eval_users": 300,
    "eval_batch_size": 32,
    "item_batch_size": 64,
    "progress": False,
}


def refresh_events(log_text: str) -> list[str]:
    """Sequence of 'refresh', 'p1', 'p2' events in a train.log."""
    out = []
    for line in log_text.splitlines():
        if "item refresh" in line:
            out.append("refresh")
        elif re.search(r"phase 1 epoch \d+:", line):
            out.append("p1")
        elif re.search(r"phase 2 epoch \d+:", line):
            out.append("p2")
    return out


def summarize(run: Path) -> str:
    m = json.loads((run / "metrics.json").read_text())
    events = refresh_events((run / "train.log").read_text())
    p1_refreshes = sum(1 for a, b in zip(events, events[1:]) if a == "refresh" and b == "p1")
    first_p2 = events.index("p2") if "p2" in events else len(events)
    p2_refreshes = events[first_p2:].count("refresh")
    u, v = m["untrained_valid"]["ndcg@10"], m["valid"]["ndcg@10"]
    lines = [
        START,
        "## Short real-data run (issue 4 acceptance)",
        "",
        f"Run with the config in `benchmarks/bench_laser_smoke.py` (CONFIG) and summarised by it: {m['dataset']}, backbone {m['backbone']['name']} (stand-in), "
        f"{m['train_rows']} training rows from {m['config']['max_train_users']} users, "
        f"{m['valid']['n']} validation / {m['test']['n']} test users (seeded caps), random (untrained) BERT4Rec "
        f"feeding a small M-Former, lr {m['config']['optim']['lr']}, batch {m['config']['optim']['batch_size']}, "
        f"device {m['device']}, wall time {m['wall_time_s'] / 60:.0f} min (under contention).",
        "",
        "| model | valid R@10 | valid N@10 | valid MRR |",
        "|---|---:|---:|---:|",
        f"| untrained | {m['untrained_valid']['recall@10']:.4f} | {u:.4f} | {m['untrained_valid']['mrr']:.4f} |",
    ]
    for h in m["history"]:
        lines.append(f"| phase {h['phase']} epoch {h['epoch']} (loss {h['loss']:.3f}) | {h['valid']['recall@10']:.4f} | "
                     f"{h['valid']['ndcg@10']:.4f} | {h['valid']['mrr']:.4f} |")
    lines += [
        f"| reported (phase {m['best_phase']}, epoch {m['best_epoch']}) | {m['valid']['recall@10']:.4f} | {v:.4f} | "
        f"{m['valid']['mrr']:.4f} |",
        "",
        f"Test of the reported epoch: R@10 {m['test']['recall@10']:.4f}, N@10 {m['test']['ndcg@10']:.4f}, "
        f"MRR {m['test']['mrr']:.4f}. Validation NDCG@10 {u:.4f} -> {v:.4f} ({v / u:.1f}x the untrained model).",
        f"Item refreshes in train.log: {p1_refreshes} in phase 1 "
        f"({sum(1 for h in m['history'] if h['phase'] == 1)} epochs), {p2_refreshes} in phase 2.",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=HERE / "out" / "laser_smoke", help="run folder")
    ap.add_argument("--data", type=Path, default=None, help="prepared Scientific folder (default: prepare one)")
    ap.add_argument("--summarize-only", action="store_true", help="only summarise an existing run folder")
    ap.add_argument("--report", type=Path, default=HERE / "laser_cpu.md")
    args = ap.parse_args(argv)
    if not args.summarize_only:
        import torch

        from laser_repro.config import from_dict
        from laser_repro.laser.config import LaserRunConfig
        from laser_repro.laser.trainer import train_laser

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        data = args.data
        if data is None:
            from laser_repro.data.dataset import save_dataset
            from laser_repro.data.sources import recformer

            data = save_dataset(recformer.prepare(SHARED, "scientific"), Path(tempfile.mkdtemp()) / "scientific")
        cfg = from_dict(LaserRunConfig, {**CONFIG, "dataset": str(data)})
        args.run.mkdir(parents=True, exist_ok=True)
        (args.run / "run.yaml").write_text(yaml.safe_dump({**CONFIG, "dataset": str(data)}))
        train_laser(cfg, args.run)
    section = summarize(args.run)
    text = args.report.read_text() if args.report.exists() else ""
    if START in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    args.report.write_text(text)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
