"""Pre-training a text-only ID model (ZESRec) on a list of source data sets before the target's training.

ZESRec embeds every item from its text, so all of its weights transfer across data sets. As UniSRec
pre-trains (its ``to_pretrain_atomic_files.py`` merges the sources into one data set; UniSRec's author
built ZESRec on that code), the sources are merged: their item-text features are stacked into one
table, their training instances re-indexed into it and shuffled together, so each batch and its
cross-entropy over all items span every source. Then the target's features come back and the
target's training starts from these weights with a fresh optimiser (RecFormer's corpus was seven
Amazon categories; ``pretrain_datasets`` lists any prepared ones). ``init_from`` is the other
route: a finished run on one source.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from laser_repro.data.dataset import load_dataset

log = logging.getLogger("laser_repro.idrec")


def merged(sources: list[tuple[torch.Tensor, np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One data set from several: (features, tokens, targets) per source -> the stacked features, and tokens
    (item + 1, 0 = padding) and targets (item indices) shifted by the items of the sources before each."""
    feats, tokens, targets, offset = [], [], [], 0
    for f, X, y in sources:
        feats.append(f)
        tokens.append(np.where(X > 0, X + offset, 0))
        targets.append(y + offset)
        offset += f.shape[0]
    return torch.cat(feats), np.concatenate(tokens), np.concatenate(targets)


def pretrain(model, cfg, out_dir: Path, device: torch.device, target_features: torch.Tensor,
             resume: tuple[dict, dict] | None = None, save: Callable[[dict, dict], None] | None = None) -> dict:
    """``cfg.pretrain_epochs`` epochs over the merged sources of ``cfg.pretrain_datasets``; returns what ran.

    After each epoch but the last, ``save(progress, optimizer_state)`` checkpoints it (the model as
    :func:`with_target_items` gives it); ``resume`` = such a (progress, optimizer_state) continues after
    its epoch, so a killed run loses at most one pre-training epoch."""
    from laser_repro.idrec.trainer import _run_epoch, item_text_features, training_instances

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    names, parts = [], []
    for i, path in enumerate(cfg.pretrain_datasets):
        ds = load_dataset(path)
        feats = item_text_features(ds, cfg, Path(out_dir) / f"pretrain-{i}", device)
        X, y = training_instances(model, ds, np.flatnonzero(ds.train_len >= 2))
        names.append(ds.name)
        parts.append((feats, X, y))
    feats, X, y = merged(parts)
    model.use_items(feats)
    progress: dict = {"epoch": 0, "history": [], "time_s": 0.0}
    if resume is not None:
        progress = resume[0]
        optimizer.load_state_dict(resume[1])
        log.info("pre-training resumed after epoch %d of %d", progress["epoch"], cfg.pretrain_epochs)
    t0 = time.perf_counter() - progress["time_s"]
    for epoch in range(progress["epoch"] + 1, cfg.pretrain_epochs + 1):
        # seeded apart from the target's epochs (1, 2, ...): epoch ids 100000 + 100 * epoch
        loss = _run_epoch(model, optimizer, X, y, cfg, 100_000 + 100 * epoch, device, out_dir)
        progress = {"epoch": epoch, "history": progress["history"] + [{"epoch": epoch, "loss": loss}],
                    "time_s": time.perf_counter() - t0}
        log.info("pre-training epoch %d on %s merged: loss %.5f (%d instances, %d items)", epoch, " + ".join(names),
                 loss, X.shape[0], feats.shape[0])
        if save is not None and epoch < cfg.pretrain_epochs:
            save(progress, optimizer.state_dict())
    model.use_items(target_features)
    return {"datasets": names, "instances": [int(part[1].shape[0]) for part in parts],
            "items": [int(part[0].shape[0]) for part in parts], "epochs": cfg.pretrain_epochs, "merged": True,
            "history": progress["history"], "time_s": time.perf_counter() - t0}


def with_target_items(state_dict: dict, target_features: torch.Tensor) -> dict:
    """The weights of a model pre-training on the merged sources, with the target's item features in place of
    theirs: a checkpoint's model is the target's (a resumed run builds it so); :func:`pretrain` puts the sources'
    features back when it resumes."""
    from laser_repro.idrec.zesrec import padded

    return {**state_dict, "text_features": padded(target_features)}
