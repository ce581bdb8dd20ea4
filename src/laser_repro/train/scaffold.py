"""What every trainer shares: device, threads, seeding, the run folder, checkpoints and outputs.

One convention for every method:

* **Device**: ``auto`` = CUDA when available, else CPU. **Threads**: ``num_threads: 0`` leaves
  torch's default, ``n > 0`` sets it.
* **Seeding**: python, numpy and torch are seeded with the run's seed before the model is
  built; trainers draw their per-epoch randomness from seeded generators.
* **Resume**: a checkpoint holds the trainer's state plus every RNG state and the *resume
  hash*: the hash of the resolved config without the trainer's execution-only keys (how a
  run executes, not what it computes). A checkpoint resumes only under the same resume hash;
  its RNG states are restored once the model is rebuilt, so a resumed run ends with the metrics
  of an uninterrupted one.
* **Done**: a run is finished when its ``metrics.json`` records the same resume hash; running
  it again changes nothing.
* **Outputs**: ``metrics.json`` (with provenance, see :mod:`laser_repro.runinfo`), ``ranks.npz``
  and ``model.pt`` are written atomically at the end, ``train.log`` appended to.
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from laser_repro.eval.evaluator import EvalResult, save_ranks
from laser_repro.io import atomic_path, read_json
from laser_repro.runinfo import config_hash, provenance, run_log, write_metrics

log = logging.getLogger("laser_repro.train")

CHECKPOINT, MODEL_FILE, LOG_FILE, METRICS_FILE, RANKS_FILE = (
    "checkpoint.pt", "model.pt", "train.log", "metrics.json", "ranks.npz")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(num_threads: int) -> None:
    """``0`` leaves torch's default; ``n > 0`` uses n CPU threads."""
    if num_threads and num_threads > 0:
        torch.set_num_threads(num_threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    out = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_hash(config: dict, execution_keys: Sequence[str]) -> str:
    """Hash of the config without ``execution_keys``: a checkpoint resumes only under the same one."""
    return config_hash({k: v for k, v in config.items() if k not in execution_keys})


def save_checkpoint(path: Path, blob: dict) -> None:
    """Write a checkpoint atomically (a kill mid-write leaves the previous one)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(blob, tmp)


class RunFolder:
    """One run's folder and the resume contract (see the module docstring)."""

    def __init__(self, out_dir: str | Path, config: dict, execution_keys: Sequence[str]):
        self.path = Path(out_dir)
        self.config = config
        self.execution_keys = tuple(execution_keys)
        self.config_hash = config_hash(config)
        self.resume_hash = resume_hash(config, self.execution_keys)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def finished(self) -> dict | None:
        """The metrics.json record when this run (same resume hash) is already complete."""
        path = self.path / METRICS_FILE
        if path.exists():
            record = read_json(path)
            if record.get("resume_hash") == self.resume_hash:
                return record
        return None

    def load_checkpoint(self) -> dict | None:
        """The checkpoint of this run, or None; refuses another config's.

        The trainer rebuilds its model first, then calls :func:`set_rng_state` with ``blob["rng"]``
        (building a model draws random numbers that the uninterrupted run drew before the checkpoint).
        """
        if not self.checkpoint_path.exists():
            return None
        blob = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        if blob.get("resume_hash") != self.resume_hash:
            raise ValueError(
                f"{self.checkpoint_path}: checkpoint of a different run config (only {list(self.execution_keys)} "
                "may change between sessions); delete it or use another --out folder")
        return blob

    def save_checkpoint(self, **blob: Any) -> None:
        save_checkpoint(self.checkpoint_path, {**blob, "resume_hash": self.resume_hash, "rng": rng_state()})

    def write_ranks(self, results: dict[str, EvalResult]) -> None:
        save_ranks(self.path / RANKS_FILE, results)

    def write_model(self, blob: dict) -> None:
        with atomic_path(self.path / MODEL_FILE, suffix=".pt") as tmp:
            torch.save(blob, tmp)

    def write_metrics(self, record: dict, device: Any) -> dict:
        """Add provenance and the resume hash to ``record``; write metrics.json atomically."""
        record = {**record, **provenance(self.config, device), "resume_hash": self.resume_hash}
        write_metrics(self.path, record)
        return record


@contextlib.contextmanager
def run_session(out_dir: str | Path) -> Iterator[Path]:
    """Around one trainer session: the run folder's ``train.log`` receives the package's logs."""
    out_dir = Path(out_dir)
    with run_log(out_dir, LOG_FILE):
        yield out_dir
