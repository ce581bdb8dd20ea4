"""``laser-repro write-config``: the workflow's small files, each written atomically.

The Snakefile resolves a run config or an artifact spec (:mod:`laser_repro.experiment.plan`)
and passes it here as JSON; rules ``write_run_config`` and ``write_artifact_spec`` run this
command. A shell job starts in well under a second, while a Snakemake ``run:`` block is
spawned as a new Snakemake process that parses the whole workflow again (about 5 s a job;
the embedded default has 73 of them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RUN_CONFIG_HEADER = "# Resolved run config written by the workflow (rule write_run_config); do not edit.\n"


def write_run_config(path: str | Path, resolved: dict, stats: str | Path) -> None:
    """A resolved run config (every dataclass field) plus its data set's fingerprint, as YAML."""
    import yaml

    from laser_repro.data.dataset import data_fingerprint
    from laser_repro.io import write_text

    resolved = {**resolved, "data_fingerprint": data_fingerprint(Path(stats).parent)}
    write_text(path, RUN_CONFIG_HEADER + yaml.safe_dump(resolved, sort_keys=False))


def write_spec(path: str | Path, spec: dict) -> None:
    """An artifact's spec (its config section resolved into runs), as JSON."""
    from laser_repro.io import write_json

    write_json(path, spec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write a resolved run config (KIND run: YAML, with the data set's fingerprint read from --data) or an "
        "artifact spec (KIND spec: JSON) from the JSON object given with --json. The workflow's rules "
        "write_run_config and write_artifact_spec run this; by hand, `laser-repro artifact NAME --config` "
        "computes a spec and the trainers read any run config."
    )
    parser.add_argument("kind", choices=("run", "spec"), help="what to write")
    parser.add_argument("--json", required=True, help="the resolved run config or spec, a JSON object")
    parser.add_argument("--data", help="(run) the data set's stats.json, whose folder is fingerprinted")
    parser.add_argument("--out", required=True, help="the file to write (atomically)")


def parse_object(text: str) -> dict:
    """The ``--json`` argument as a dict; anything else is an error saying what it got."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--json: not valid JSON ({err}): {text[:80]!r}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"--json: expected a JSON object, got {type(obj).__name__}")
    return obj


def run(args: argparse.Namespace) -> int:
    obj = parse_object(args.json)
    if args.kind == "spec":
        write_spec(args.out, obj)
        return 0
    if not args.data:
        raise ValueError("--data: required for a run config (the data set's stats.json)")
    if not Path(args.data).exists():
        raise FileNotFoundError(f"--data: {args.data} not found (prepare the data set first)")
    write_run_config(args.out, obj, args.data)
    return 0
