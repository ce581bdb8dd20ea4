"""The one command-line shape of every trainer: ``laser-repro COMMAND --config RUN.yaml --out DIR``.

Each trainer's CLI module only states its description; the run-config class and the train
function come from the method registry (``laser_repro.experiment.registry.TRAINERS``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def trainer_cli(trainer: str, description: str, example: str) -> tuple[Callable, Callable]:
    """(add_arguments, run) for ``laser-repro`` sub-command of the registered ``trainer``."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        from laser_repro.experiment.registry import TRAINERS

        cls = TRAINERS[trainer].config_class.split(":")[1]
        parser.description = (f"{description} Writes metrics.json, ranks.npz, model.pt, checkpoint.pt and train.log "
                              "to --out; re-running the same command resumes from the last checkpoint.")
        parser.add_argument("--config", required=True, type=Path, help=f"run config YAML (keys of {cls})")
        parser.add_argument("--replace-stale", action="store_true",
                            help="set a checkpoint or metrics.json of another run config or data set in --out aside "
                                 "(in --out/stale/, taken back if that config returns) and start over (default: "
                                 "refuse; the workflow passes this flag)")
        parser.add_argument("--out", required=True, type=Path, help=f"run folder, e.g. {example}")

    def run(args: argparse.Namespace) -> int:
        from laser_repro.config import load_config
        from laser_repro.experiment.registry import TRAINERS, import_object

        t = TRAINERS[trainer]
        import_object(t.train)(load_config(t.config_cls(), args.config), args.out, replace_stale=args.replace_stale)
        return 0

    return add_arguments, run
