"""Provenance and the ``metrics.json`` every trainer writes.

``metrics.json`` (one per run folder)::

    {"method": str, "dataset": str, "seed": int,
     "valid": {"recall@10", "ndcg@10", "mrr@10", "mrr", "n"},   # unrounded
     "test":  {...same keys...},
     "best_epoch": int, "ties": str,
     "config": {...resolved run config...}, "config_hash": str,
     "git_commit": str, "versions": {...}, "device": str, "finished_at": str (UTC, ISO 8601), "wall_time_s": float,
     "run_folder": str (the absolute folder it was written to),
     ...method-specific extras}

next to ``ranks.npz`` (per-user ranks, see :func:`laser_repro.eval.evaluator.save_ranks`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from laser_repro.io import write_json

TRACKED_PACKAGES = ("laser-repro", "torch", "transformers", "peft", "numpy", "scipy", "pandas")


def config_hash(config: dict) -> str:
    """Stable short hash of a resolved config (sorted-key JSON, sha256, 16 hex)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_commit(path: str | Path | None = None) -> str:
    """The current git commit of the checkout containing ``path`` ('unknown' outside git)."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that affect numbers."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name and its bf16 matrix units, e.g. 'AMD EPYC, avx512_bf16'.

    The bf16 speed of a CPU depends on these units (AMX tiles run a large bf16 matmul about twice as fast as
    AVX512-BF16 on the same core count), so every speed figure names them. ``cpuinfo`` defaults to
    /proc/cpuinfo; where it cannot be read, the platform's processor name with "bf16 units unknown".
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return f"{platform.processor() or 'unknown'}, bf16 units unknown"
    name, flags = "unknown", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    units = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return ", ".join([name, *units]) if units else f"{name}, no bf16 units"


def device_description(device: Any) -> str:
    """Human-readable device, e.g. 'cpu (AMD EPYC, avx512_bf16; x86_64, 2 threads)' or the CUDA device name."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{dev.index or 0} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({cpu_model()}; {platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(config: dict, device: Any) -> dict:
    """Everything that makes a number traceable, except the metrics themselves."""
    return {
        "config": config,
        "config_hash": config_hash(config),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": device_description(device),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_metrics(out_dir: str | Path, record: dict) -> Path:
    """Write ``record`` (see module docstring) to ``out_dir/metrics.json`` atomically."""
    path = Path(out_dir) / "metrics.json"
    write_json(path, record)
    return path


LOG_FORMAT, LOG_DATE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"  # console and train.log


def log_formatter():
    import logging

    return logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT)


@contextlib.contextmanager
def run_log(out_dir: str | Path, filename: str = "train.log") -> Iterator[Path]:
    """Also send the ``laser_repro`` logs (INFO and up) to ``out_dir/filename`` while inside.

    Appends, so a resumed run keeps the log of the sessions before it.
    """
    import logging

    path = Path(out_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(log_formatter())
    root = logging.getLogger("laser_repro")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()


def is_ours(blob: Any) -> bool:
    """Whether a metrics.json record or a checkpoint was written by this suite's trainers (they carry a resume hash;
    those before 2026-11-28 a config hash); what they did not write is never removed, ``replace_stale`` or not."""
    return isinstance(blob, dict) and any(isinstance(blob.get(k), str) for k in ("resume_hash", "config_hash"))
