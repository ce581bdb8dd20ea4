"""``laser-repro train-llamarec --config RUN.yaml --out DIR``: train one LlamaRec ranker."""

from __future__ import annotations

from laser_repro.train.cli import trainer_cli

add_arguments, run = trainer_cli(
    "llamarec",
    ("Train LlamaRec's ranker (an LLM with LoRA over the top 20 of a finished LRURec run, letters A-T); "
     "metrics.json also holds LlamaRec's own overall metrics and the retriever alone."),
    "results/runs/scientific/llamarec/main/seed~0",
)
