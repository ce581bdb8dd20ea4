"""Model name -> (model class, config dataclass); builds a model from a config override dict."""

from __future__ import annotations

from typing import Any

import torch

from laser_repro.config import from_dict, to_dict
from laser_repro.idrec.base import SeqRecModel
from laser_repro.idrec.bert4rec import BERT4Rec, BERT4RecConfig
from laser_repro.idrec.fdsa import FDSA, FDSAConfig
from laser_repro.idrec.gru4rec import GRU4Rec, GRU4RecConfig
from laser_repro.kar.model import KAR, KARConfig
from laser_repro.idrec.lrurec import LRURec, LRURecConfig
from laser_repro.idrec.recguru import RecGURU, RecGURUConfig
from laser_repro.idrec.sasrec import SASRec, SASRecConfig
from laser_repro.idrec.zesrec import ZESRec, ZESRecConfig

MODELS: dict[str, tuple[type[SeqRecModel], type]] = {
    "sasrec": (SASRec, SASRecConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "fdsa": (FDSA, FDSAConfig),
    "recguru": (RecGURU, RecGURUConfig),
    "zesrec": (ZESRec, ZESRecConfig),
    "lrurec": (LRURec, LRURecConfig),
    "kar": (KAR, KARConfig),
}


def features_of(name: str) -> tuple[str, ...]:
    """Feature tensors the model is built with besides its config (``text_features``; KAR's knowledge)."""
    return getattr(MODELS[name][0], "features", ())


def uses_text(name: str) -> bool:
    """The model reads item-text features (the trainer encodes them with ``text_encoder``)."""
    return "text_features" in features_of(name)


def model_config(name: str, overrides: dict[str, Any] | None = None, where: str = "model_config"):
    """The model's config dataclass with ``overrides`` applied (unknown keys are errors)."""
    if name not in MODELS:
        raise ValueError(f"model: unknown ID recommender {name!r}; expected one of {sorted(MODELS)}")
    return from_dict(MODELS[name][1], overrides or {}, where)


def build_model(
    name: str, n_items: int, overrides: dict[str, Any] | None = None, text_features: torch.Tensor | None = None,
    **features: torch.Tensor,
) -> SeqRecModel:
    """Instantiate model ``name`` for ``n_items`` items (uses the current torch RNG for init); the feature
    tensors it declares (:func:`features_of`) are passed on."""
    cfg = model_config(name, overrides)
    cls = MODELS[name][0]
    given = {"text_features": text_features, **features}
    return cls(n_items, cfg, **{k: given.get(k) for k in features_of(name)})


def resolved_model_config(model: SeqRecModel) -> dict:
    return to_dict(model.config)
