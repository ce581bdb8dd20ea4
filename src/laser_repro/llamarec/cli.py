"""``laser-repro train-llamarec --config RUN.yaml --out DIR``: train one LlamaRec ranker."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train LlamaRec's ranker (an LLM with LoRA over the top 20 of a finished LRURec run, letters A-T) and write "
        "metrics.json (composite full-ranking metrics, LlamaRec's own overall metrics, the retriever alone), "
        "ranks.npz, model.pt (the adapters), checkpoint.pt and train.log to --out. Re-running resumes."
    )
    parser.add_argument("--config", required=True, type=Path, help="run config YAML (keys of LlamaRecRunConfig)")
    parser.add_argument("--replace-stale", action="store_true",
                        help="remove a checkpoint or metrics.json of another run config or data set in --out and start "
                             "over (default: refuse; the workflow passes this flag)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. results/runs/scientific/llamarec/main/seed~0")


def run(args: argparse.Namespace) -> int:
    from laser_repro.config import load_config
    from laser_repro.llamarec.config import LlamaRecRunConfig
    from laser_repro.llamarec.trainer import train_llamarec

    cfg = load_config(LlamaRecRunConfig, args.config)
    train_llamarec(cfg, args.out, replace_stale=args.replace_stale)
    return 0
