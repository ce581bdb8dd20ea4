"""Shared fixtures. The real data sets live in ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (only the suite's dev machines have it)")
    return SHARED_DATA


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
