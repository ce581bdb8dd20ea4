"""``laser-repro train-llm4rec --config RUN.yaml --out DIR``: train one LLM4REC run."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train LLM4REC (leave-one-out port: a decoder LLM with user and item tokens and the closed-form graph "
        "attention bias; content and collaborative pre-training, then next-item fine-tuning over all items) and "
        "write metrics.json, ranks.npz, model.pt, checkpoint.pt and train.log to --out. Re-running resumes."
    )
    parser.add_argument("--config", required=True, type=Path, help="run config YAML (keys of LLM4RecRunConfig)")
    parser.add_argument("--replace-stale", action="store_true",
                        help="remove a checkpoint or metrics.json of another run config or data set in --out and start "
                             "over (default: refuse; the workflow passes this flag)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. results/runs/scientific/llm4rec/main/seed~0")


def run(args: argparse.Namespace) -> int:
    from laser_repro.config import load_config
    from laser_repro.llm4rec.config import LLM4RecRunConfig
    from laser_repro.llm4rec.trainer import train_llm4rec

    cfg = load_config(LLM4RecRunConfig, args.config)
    train_llm4rec(cfg, args.out, replace_stale=args.replace_stale)
    return 0
