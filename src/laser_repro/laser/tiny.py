"""Tiny data sets and configs for tests, benchmarks and smoke runs (seconds on one CPU core)."""

from __future__ import annotations

from pathlib import Path

from laser_repro.data.dataset import save_dataset
from laser_repro.data.sources import synthetic
from laser_repro.laser.config import (BiTuningConfig, LaserRunConfig, LossConfig, MFormerConfig, OptimConfig,
                                      PhaseConfig, TemplateConfig)

TINY_MFORMER = dict(n_experts=4, top_k=2, n_queries=4, d_model=32, n_layers=2, n_heads=2, intermediate=64, dropout=0.0)


def tiny_dataset(root: Path, users: int = 40, items: int = 30, seed: int = 0) -> Path:
    """A prepared synthetic data set folder (the real generator and Amazon-2018 parser)."""
    ds = synthetic.prepare(root / "raw", "synthetic", users=users, items=items, seed=seed, categories=3)
    return save_dataset(ds, root / "prepared")


def tiny_config(dataset: Path | str = "", cache: Path | str | None = None, **over) -> LaserRunConfig:
    """A config with tiny sizes; keyword overrides for top-level keys or nested dataclasses."""
    base = dict(
        dataset=str(dataset), backbone="tiny-gpt2", cache_dir=str(cache) if cache else None,
        template=TemplateConfig(window=4, max_tokens=96), mformer=MFormerConfig(**TINY_MFORMER),
        phases=PhaseConfig(phase1_max_epochs=2, phase2_epochs=1), optim=OptimConfig(batch_size=16, lr=3e-3),
        progress=False, eval_batch_size=64, item_batch_size=64,
    )
    base.update(over)
    return LaserRunConfig(**base)


__all__ = ["tiny_dataset", "tiny_config", "TINY_MFORMER", "BiTuningConfig", "LossConfig", "MFormerConfig",
           "OptimConfig", "PhaseConfig", "TemplateConfig"]
