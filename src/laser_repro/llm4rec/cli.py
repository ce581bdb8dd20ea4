"""``laser-repro train-llm4rec --config RUN.yaml --out DIR``: train one LLM4REC run."""

from __future__ import annotations

from laser_repro.train.cli import trainer_cli

add_arguments, run = trainer_cli(
    "llm4rec",
    ("Train LLM4REC (leave-one-out port: a decoder LLM with user and item tokens and the closed-form graph"
     " attention bias; content and collaborative pre-training, then next-item fine-tuning over all items)."),
    "results/runs/scientific/llm4rec/main/seed~0",
)
