"""``laser-repro train-recformer --config RUN.yaml --out DIR``: train one RECFORMER run."""

from __future__ import annotations

from laser_repro.train.cli import trainer_cli

add_arguments, run = trainer_cli(
    "recformer",
    ("Train RECFORMER (optional IIC + MLM pre-training, then the official two-stage fine-tuning: "
     "cosine/tau over all items with a frozen item table, stage 1 re-encoding items every epoch, stage 2 "
     "with stage 1's best table)."),
    "results/runs/scientific/recformer/main/seed~0",
)
