"""Pre-training a text-only ID model (ZESRec) on a list of source data sets before the target's training.

ZESRec embeds every item from its text, so all of its weights transfer across data sets: each
pre-training epoch passes over the training sequences of every source data set in the listed order,
with that data set's item-text features swapped in (cross-entropy over its own items), then the
target's features come back and the target's training starts from these weights with a fresh
optimiser (RecFormer's corpus was seven Amazon categories; ``pretrain_datasets`` lists any
prepared ones). ``init_from`` is the other route: a finished run on one source.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from laser_repro.data.dataset import load_dataset

log = logging.getLogger("laser_repro.idrec")


def pretrain(model, cfg, out_dir: Path, device: torch.device, target_features: torch.Tensor) -> dict:
    """``cfg.pretrain_epochs`` passes over every source in ``cfg.pretrain_datasets``; returns what ran."""
    from laser_repro.idrec.trainer import _run_epoch, item_text_features, training_instances

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sources = []
    for i, path in enumerate(cfg.pretrain_datasets):
        ds = load_dataset(path)
        feats = item_text_features(ds, cfg, Path(out_dir) / f"pretrain-{i}", device)
        X, y = training_instances(model, ds, np.flatnonzero(ds.train_len >= 2))
        sources.append((ds.name, feats, X, y))
    t0 = time.perf_counter()
    losses = []
    for epoch in range(1, cfg.pretrain_epochs + 1):
        for i, (name, feats, X, y) in enumerate(sources):
            model.use_items(feats)
            # seeded apart from the target's epochs (1, 2, ...): epoch ids 100000 + 100 * epoch + i
            loss = _run_epoch(model, optimizer, X, y, cfg, 100_000 + 100 * epoch + i, device, out_dir)
            losses.append({"epoch": epoch, "dataset": name, "loss": loss})
            log.info("pre-training epoch %d on %s: loss %.5f (%d instances)", epoch, name, loss, X.shape[0])
    model.use_items(target_features)
    return {"datasets": [name for name, *_ in sources], "instances": [int(X.shape[0]) for *_, X, _ in sources],
            "epochs": cfg.pretrain_epochs, "history": losses, "time_s": time.perf_counter() - t0}
