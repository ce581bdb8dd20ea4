"""``laser-repro train-laser --config RUN.yaml --out DIR``: train one Laser run (two phases)."""

from __future__ import annotations

from laser_repro.train.cli import trainer_cli

add_arguments, run = trainer_cli(
    "laser",
    ("Train Laser (Bi-Tuning: M-Former prefix + template + learnable suffix around a frozen LLM) with the "
     "paper's two-phase schedule (keys: laser_repro/laser/config.py)."),
    "results/runs/scientific/laser-c/main/seed~0",
)
