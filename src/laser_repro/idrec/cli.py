"""``laser-repro train-idrec --config RUN.yaml --out DIR``: train one ID-based recommender."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train SASRec, BERT4Rec, GRU4Rec, FDSA, RecGURU or ZESRec (RecBole protocol: CE over all items, early stopping on "
        "validation NDCG@10) and write metrics.json, ranks.npz, model.pt, checkpoint.pt and train.log to --out. "
        "Re-running the same command resumes from the last epoch's checkpoint."
    )
    parser.add_argument("--config", required=True, type=Path, help="run config YAML (keys of IDRecRunConfig)")
    parser.add_argument("--replace-stale", action="store_true",
                        help="remove a checkpoint or metrics.json of another run config or data set in --out and start "
                             "over (default: refuse; the workflow passes this flag)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. results/runs/scientific/sasrec/main/seed~0")


def run(args: argparse.Namespace) -> int:
    from laser_repro.config import load_config
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec

    cfg = load_config(IDRecRunConfig, args.config)
    train_idrec(cfg, args.out, replace_stale=args.replace_stale)
    return 0
