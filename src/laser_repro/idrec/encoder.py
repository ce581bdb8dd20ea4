"""The frozen collaborative encoder that gives Laser's M-Former its input C (paper §4.2).

A trained ID recommender (BERT4Rec by default: 2 blocks, 2 heads, 32 per head, so d_c = 64)
is frozen and maps the last ``window`` (10) items of a history to C in R^{N x d_c}: its
last-layer states per position, WITHOUT the [MASK] token BERT4Rec appends for next-item
prediction. An item is encoded as a history of one (N = 1). Any model of
:mod:`laser_repro.idrec.registry` can serve (Figure 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from laser_repro.idrec.base import SeqRecModel, pad_histories
from laser_repro.idrec.registry import build_model, features_of
from laser_repro.io import read_json
from laser_repro.train.inputs import MODEL_FILE  # a finished run's model.pt
from laser_repro.train.scaffold import load_torch

DEFAULT_WINDOW = 10  # spec: the last 10 items, for both the text and the collaborative input


def window_mask(mask: torch.Tensor, window: int = DEFAULT_WINDOW) -> torch.Tensor:
    """Mask of :meth:`CollaborativeEncoder.forward`'s output for an input ``mask`` ([B, N] -> [B, N'])."""
    lengths = mask.sum(dim=1).clamp(max=window)
    width = max(1, int(lengths.max())) if mask.shape[0] else 1
    return torch.arange(width, device=mask.device)[None] < lengths[:, None]


class CollaborativeEncoder(nn.Module):
    """Frozen ID recommender -> per-position last-layer states of the last ``window`` items."""

    def __init__(self, model: SeqRecModel, window: int = DEFAULT_WINDOW, source: str = ""):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.d_c: int = model.hidden
        self.window: int = window
        self.model_name: str = model.name
        self.source: str = source  # run folder it was loaded from ('' if random)

    def train(self, mode: bool = True) -> "CollaborativeEncoder":
        """Always stays in eval mode (no dropout): the encoder is frozen."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """C for right-padded ``items`` ([B, N] dense item indices, ``mask`` True on real items).

        Returns ``[B, N', d_c]`` with N' = max over rows of min(length, window) (at least 1):
        row b holds the states of its last min(length_b, window) items in time order, left-aligned,
        zeros after them; :func:`window_mask` gives the matching mask.
        """
        if items.shape != mask.shape:
            raise ValueError(f"items {tuple(items.shape)} and mask {tuple(mask.shape)} differ in shape")
        mask = mask.bool()
        lengths = mask.sum(dim=1)
        cols = torch.arange(mask.shape[1], device=mask.device)[None]
        if not torch.equal(mask, cols < lengths[:, None]):
            raise ValueError("mask must be right-padded: True on a prefix of each row, False after it")
        out_mask = window_mask(mask, self.window)
        width = out_mask.shape[1]
        start = (lengths - self.window).clamp(min=0)
        idx = (start[:, None] + torch.arange(width, device=items.device)[None]).clamp(max=max(items.shape[1] - 1, 0))
        if items.shape[1] == 0:
            tokens = torch.zeros(items.shape[0], width, dtype=torch.long, device=items.device)
        else:
            tokens = torch.where(out_mask, items.long().gather(1, idx) + 1, torch.zeros((), dtype=torch.long, device=items.device))
        states = self.model.sequence_states(tokens)
        return states.float() * out_mask[..., None]

    @torch.no_grad()
    def encode(
        self, histories: Sequence[Sequence[int]], device: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ragged item histories -> (C ``[B, N, d_c]``, mask ``[B, N]``); an item = a history of one."""
        device = torch.device(device) if device is not None else next(self.model.parameters()).device
        tokens = torch.as_tensor(pad_histories(histories, self.window), device=device)
        mask = tokens > 0
        items = (tokens - 1).clamp(min=0)
        return self.forward(items, mask), window_mask(mask, self.window)


def load_collaborative_encoder(run_dir: str | Path, device: Any = "cpu", window: int = DEFAULT_WINDOW,
                               dataset: str | Path | None = None, key: str = "idrec_run") -> CollaborativeEncoder:
    """The frozen model of a finished ``laser-repro train-idrec`` run folder (model.pt + metrics.json); with
    ``dataset`` (the reading run's data folder), refused unless it was trained on that data set's items (the
    error names the run config's ``key``)."""
    run_dir = Path(run_dir)
    path = run_dir / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no trained ID model here; run `laser-repro train-idrec --config RUN.yaml --out {run_dir}` first"
        )
    if not (run_dir / "metrics.json").exists():
        raise FileNotFoundError(f"{run_dir / 'metrics.json'}: missing, the ID-model run did not finish")
    record = read_json(run_dir / "metrics.json")  # a broken file fails loudly here
    blob = load_torch(path, "a train-idrec run's model.pt", keys=("model", "n_items", "model_config", "state_dict"),
                      weights_only=True)
    if dataset is not None:
        same_items(run_dir, record, int(blob["n_items"]), dataset, key)
    sd = blob["state_dict"]  # feature buffers travel in model.pt (text features: row 0 = padding)
    feats = {k: sd[k][1:] if k == "text_features" else sd[k] for k in features_of(blob["model"]) if k in sd}
    model = build_model(blob["model"], int(blob["n_items"]), blob["model_config"], **feats)
    model.load_state_dict(blob["state_dict"])
    return CollaborativeEncoder(model.to(device), window=window, source=str(run_dir))


def same_items(run_dir: Path, record: dict, n_items: int, dataset: str | Path, key: str = "idrec_run") -> None:
    """Refuse an ID-model run of another data set: its item ids would index other items (or past the table)."""
    from laser_repro.data.dataset import data_fingerprint, load_dataset

    theirs, ours = record.get("data_fingerprint"), data_fingerprint(dataset)
    if theirs == ours or (theirs is None and load_dataset(dataset).n_items == n_items):  # (runs before fingerprints)
        return
    raise ValueError(f"{key}: {run_dir} was trained on data set {record.get('dataset')!r} (fingerprint {theirs}, "
                     f"{n_items} items); this run's data set {dataset} has fingerprint {ours}: train the ID model "
                     "on this data set")


def random_collaborative_encoder(
    n_items: int, model: str = "bert4rec", seed: int = 0, window: int = DEFAULT_WINDOW, device: Any = "cpu", **model_kwargs
) -> CollaborativeEncoder:
    """An untrained (randomly initialised, seeded) encoder: tests and the 0% zero-shot cell.

    ``model_kwargs`` override the model's config (e.g. ``hidden=32``); the global RNG is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(model, n_items, model_kwargs)
    return CollaborativeEncoder(net.to(device), window=window)
