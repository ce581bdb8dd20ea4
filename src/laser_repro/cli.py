"""The ``laser-repro`` command: one entry point, one module per sub-command.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; it is
imported only when its command is used, so ``laser-repro data ...`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from laser_repro.io import InputError
from laser_repro.runinfo import LOG_DATE_FORMAT, LOG_FORMAT

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("laser_repro.data.cli", "download, prepare and describe data sets (Table 1)"),
    "train-idrec": ("laser_repro.idrec.cli",
                    "train an ID-trainer recommender (SASRec, BERT4Rec, GRU4Rec, FDSA, RecGURU, ZESRec, LRURec, KAR)"),
    "train-recformer": ("laser_repro.recformer.cli", "train RECFORMER (pre-training, two-stage fine-tuning)"),
    "kar-knowledge": ("laser_repro.kar.cli", "generate or reuse KAR's knowledge texts for a data set"),
    "train-llm4rec": ("laser_repro.llm4rec.cli", "train LLM4REC (user/item tokens, graph attention bias)"),
    "train-llamarec": ("laser_repro.llamarec.cli", "train LlamaRec's LoRA ranker over an LRURec run's top 20"),
    "train-laser": ("laser_repro.laser.cli", "train Laser (Bi-Tuning + M-Former, two phases)"),
    "methods": ("laser_repro.experiment.cli", "list the registered methods, their trainers and what a run needs"),
    "write-config": ("laser_repro.experiment.write",
                     "write a resolved run config or an artifact spec (the workflow's small files)"),
    "artifact": ("laser_repro.artifacts.cli", "build a paper table, figure or the reported-vs-reproduced comparison"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laser-repro",
        description="Reproduce the Laser paper's tables and figures (see README.md).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
        datefmt=LOG_DATE_FORMAT,
    )
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (OSError, ValueError, InputError) as err:  # bad input, a folder given as a file, a failed download
        logging.getLogger("laser_repro").error("%s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
