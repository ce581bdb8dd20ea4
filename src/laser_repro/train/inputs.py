"""What a run reads besides its own data set, from its config class's declarations.

A run-config class names its inputs by key: ``INPUT_RUNS`` (a finished run's folder, whose model.pt
is read), ``INPUT_FILES`` (a file) and ``INPUT_DATASETS`` (a list of prepared data sets). This one list
serves the workflow (rule inputs, :meth:`laser_repro.experiment.plan.Experiment.file_inputs`) and the
trainers (fingerprints and the missing-input check, :mod:`laser_repro.train.scaffold`); it imports no
torch, so the Snakefile can read it.
"""

from __future__ import annotations

import re
from pathlib import Path

from laser_repro.config import dotted

MODEL_FILE = "model.pt"  # what a finished run leaves for the runs that read it
INPUT_KINDS = {"run": "the model.pt of a finished run", "file": "a file",
               "dataset": "a prepared data set (`laser-repro data prepare`)"}


def declared_inputs(cfg) -> list[tuple[str, Path, str]]:
    """``(key, path, kind)`` (:data:`INPUT_KINDS`) of each input ``cfg`` names and reads besides its data set, from its
    config class's declarations: ``INPUT_RUNS`` (the run's model.pt), ``INPUT_FILES`` (the file) and
    ``INPUT_DATASETS`` (the prepared data set's stats.json; key ``name[i]``). A run the config names but does not
    read (``unread_inputs()``, e.g. Laser's ID model without the M-Former) is left out."""
    out = []
    unread = cfg.unread_inputs() if hasattr(cfg, "unread_inputs") else ()
    for key in getattr(cfg, "INPUT_RUNS", ()):
        path = dotted(cfg, key) if key not in unread else None
        if path:
            out.append((key, Path(path) / MODEL_FILE, "run"))
    for key in getattr(cfg, "INPUT_FILES", ()):
        path = dotted(cfg, key)
        if path:
            out.append((key, Path(path), "file"))
    for key in getattr(cfg, "INPUT_DATASETS", ()):
        for i, path in enumerate(dotted(cfg, key) or []):
            out.append((f"{key}[{i}]", Path(path) / "stats.json", "dataset"))
    return out


def role(key: str) -> str:
    """A declared input's key as a rule-input name: ``pretrain.datasets[1]`` -> ``pretrain_datasets_1``."""
    return re.sub(r"\W+", "_", key).strip("_")
