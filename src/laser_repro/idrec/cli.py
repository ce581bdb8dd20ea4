"""``laser-repro train-idrec --config RUN.yaml --out DIR``: train one ID-trainer recommender."""

from __future__ import annotations

from laser_repro.train.cli import trainer_cli

add_arguments, run = trainer_cli(
    "idrec",
    ("Train an ID-trainer recommender (SASRec, BERT4Rec, GRU4Rec, FDSA, RecGURU, ZESRec, LRURec, KAR) "
     "under the RecBole protocol (CE over all items unless the model says otherwise, early stopping on "
     "validation)."),
    "results/runs/scientific/sasrec/main/seed~0",
)
