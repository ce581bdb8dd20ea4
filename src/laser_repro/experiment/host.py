"""What the machine that builds the workflow's DAG offers its local jobs (no torch import: the Snakefile reads it)."""

from __future__ import annotations

import os
from pathlib import Path


def gpu_count(dev: str | Path = "/dev", visible: str | None = None) -> int:
    """NVIDIA GPUs this host shows: its ``nvidiaN`` device files, narrowed by ``CUDA_VISIBLE_DEVICES`` (``visible``;
    read from the environment when None; empty or -1 hides them all)."""
    n = sum(1 for p in Path(dev).glob("nvidia[0-9]*") if p.name[len("nvidia"):].isdigit())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        ids = ids[: next((i for i, d in enumerate(ids) if d == "-1"), len(ids))]  # CUDA stops at the first -1
        ids = [d for d in ids if d.isdigit() or d.startswith(("GPU-", "MIG-"))]  # "NoDevFiles" (SLURM) names none
        n = min(n, len(ids))
    return n


def llm_job_threads(cores: int | None, gpus: int) -> int:
    """Threads a local job that loads a language model claims: every core of the run on a host with a GPU, so that
    two such jobs never share one GPU's memory (6-7B models in bf16 take 13-14 GB each, with activations far more);
    1 elsewhere (CPU jobs run side by side, one thread each). SLURM jobs take theirs from the profile's set-threads."""
    return max(1, cores or 1) if gpus else 1


def job_threads(method: str | None, cores: int | None, gpus: int) -> int:
    """A local job's threads: :func:`llm_job_threads` for one through a language model (``method`` None: KAR's
    knowledge generation; else train_large's methods, and KAR, which encodes its knowledge with the LLM first), else 1."""
    from laser_repro.experiment import registry

    m = registry.get_method(method) if method is not None else None
    llm = m is None or m.trainer.compute == "large" or m.knowledge
    return llm_job_threads(cores, gpus) if llm else 1
