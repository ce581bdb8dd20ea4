"""``laser-repro train-recformer --config RUN.yaml --out DIR``: train one RECFORMER run."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train RECFORMER (optional IIC + MLM pre-training, then the official two-stage fine-tuning: cosine/tau over "
        "all items with a frozen item table, stage 1 re-encoding items every epoch, stage 2 with stage 1's best "
        "table) and write metrics.json, ranks.npz, model.pt, checkpoint.pt and train.log to --out. Re-running the "
        "same command resumes from the last epoch's checkpoint."
    )
    parser.add_argument("--config", required=True, type=Path, help="run config YAML (keys of RecformerRunConfig)")
    parser.add_argument("--replace-stale", action="store_true",
                        help="remove a checkpoint or metrics.json of another run config or data set in --out and start "
                             "over (default: refuse; the workflow passes this flag)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. results/runs/scientific/recformer/main/seed~0")


def run(args: argparse.Namespace) -> int:
    from laser_repro.config import load_config
    from laser_repro.recformer.config import RecformerRunConfig
    from laser_repro.recformer.trainer import train_recformer

    cfg = load_config(RecformerRunConfig, args.config)
    train_recformer(cfg, args.out, replace_stale=args.replace_stale)
    return 0
