"""``laser-repro train-laser --config RUN.yaml --out DIR``: train one Laser run (two phases)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train Laser (Bi-Tuning: M-Former prefix + template + learnable suffix around a frozen LLM) with the "
        "paper's two-phase schedule, and write metrics.json, ranks.npz, model.pt (trainable weights), "
        "checkpoint.pt and train.log to --out. Re-running the same command resumes from the last epoch's "
        "checkpoint and ends with identical metrics. Keys of the run config: see laser_repro/laser/config.py "
        "(LaserRunConfig)."
    )
    parser.add_argument("--config", required=True, type=Path, help="run config YAML (keys of LaserRunConfig)")
    parser.add_argument("--replace-stale", action="store_true",
                        help="remove a checkpoint or metrics.json of another run config or data set in --out and start "
                             "over (default: refuse; the workflow passes this flag)")
    parser.add_argument("--out", required=True, type=Path,
                        help="run folder, e.g. results/runs/scientific/laser-c/main/seed~0")


def run(args: argparse.Namespace) -> int:
    from laser_repro.config import load_config
    from laser_repro.laser.config import LaserRunConfig
    from laser_repro.laser.trainer import train_laser

    cfg = load_config(LaserRunConfig, args.config)
    train_laser(cfg, args.out, replace_stale=args.replace_stale)
    return 0
