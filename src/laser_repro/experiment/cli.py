"""``laser-repro methods``: every registered method, its trainer and what a run needs."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List every method the suite can run (the registry in laser_repro/experiment/registry.py): its Table 2 "
        "label and group, the trainer command and run-config dataclass, and what a run needs."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def rows() -> list[dict]:
    from laser_repro.experiment.registry import GROUPS, METHODS

    return [{
        "method": m.name,
        "label": m.label,
        "table2_group": GROUPS.get(m.group, "—") if m.group else "— (not a Table 2 row)",
        "command": f"laser-repro {m.trainer.command}",
        "run_config": m.trainer.config_class.replace(":", "."),
        "needs": ", ".join(m.needs),
    } for m in METHODS.values()]


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(tabulate(table, headers="keys", tablefmt="github"))
    return 0
