"""Bi-Tuning (paper §4.1, Eqs. 1-3): [prefix][instruction tokens][suffix] -> frozen LLM -> h.

The prefix comes from the M-Former on the frozen ID recommender's embeddings (§4.2), from L
learnable vectors ("w/o M-Former") or is absent ("w/o prefix"). The embedding is the
last-layer state at the suffix (S suffix vectors: states averaged, Figure 4), or the mean
over all real positions ("w/o suffix, mean pooling") or the state at the hard EOS token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from laser_repro.laser.backbones import Backbone
from laser_repro.laser.config import LaserRunConfig, no_grad_batch
from laser_repro.laser.inputs import HistoryTokens
from laser_repro.laser.losses import iic_loss, load_balancing_loss, total_loss
from laser_repro.laser.mformer import MFormer

NO_GRAD_PAD_MULTIPLE = 32  # no-grad batches are left-padded to a multiple of this many positions


@dataclass
class Embedding:
    h: torch.Tensor  # [B, H] float32 embeddings (h_u or h_i)
    probs: torch.Tensor | None = None  # router p [B, N, K] (Eq. 8), None without an M-Former
    mask: torch.Tensor | None = None  # [B, N] real collaborative positions


@dataclass
class LaserOutput:
    loss: torch.Tensor  # Eq. 10
    loss_iic: torch.Tensor  # Eq. 6
    loss_lb: torch.Tensor | None  # Eqs. 7-9 (None without an M-Former)
    h: torch.Tensor  # user embeddings [B, H]


class LaserModel(nn.Module):
    """Trainable prefix source + suffix around a frozen backbone; the ID encoder is frozen too."""

    def __init__(self, cfg: LaserRunConfig, backbone: Backbone, items: list[dict], encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        bt = cfg.bituning
        hidden, std = backbone.hidden_size, backbone.embedding_std
        self.mformer: MFormer | None = None
        self.prefix: nn.Parameter | None = None
        self.encoder = None
        if bt.prefix == "mformer":
            if encoder is None:
                raise ValueError("bituning.prefix = mformer needs a collaborative encoder (idrec_run)")
            self.encoder = encoder.requires_grad_(False).eval()
            self.mformer = MFormer(cfg.mformer, int(encoder.d_c), hidden)
        elif bt.prefix == "learnable":
            self.prefix = nn.Parameter(torch.randn(bt.n_prefix, hidden) * std)  # "w/o M-Former"
        elif bt.prefix != "none":
            raise ValueError(f"bituning.prefix: expected mformer|learnable|none, got {bt.prefix!r}")
        # bituning.prefix_scale "token" (diagnostic): every prefix vector rescaled to the token scale
        self.prefix_norm = backbone.embedding_norm if bt.prefix_scale == "token" else None
        if bt.suffix == "learnable":
            if bt.n_suffix < 1:
                raise ValueError(f"bituning.n_suffix must be >= 1, got {bt.n_suffix}")
            self.suffix: nn.Parameter | None = nn.Parameter(torch.randn(bt.n_suffix, hidden) * std)
        elif bt.suffix in ("mean", "eos"):
            self.suffix = None
        else:
            raise ValueError(f"bituning.suffix: expected learnable|mean|eos, got {bt.suffix!r}")
        budget = min(cfg.template.max_tokens, backbone.max_positions - self.prefix_len - self.suffix_len)
        self.tokens = HistoryTokens(items, backbone.tokenize_many, cfg.template.variant, cfg.template.category_field,
                                    cfg.template.window, budget)

    # -- sizes -----------------------------------------------------------------------
    @property
    def prefix_len(self) -> int:
        if self.mformer is not None:
            return self.cfg.mformer.n_queries
        return 0 if self.prefix is None else self.prefix.shape[0]

    @property
    def suffix_len(self) -> int:
        return self.suffix.shape[0] if self.suffix is not None else int(self.cfg.bituning.suffix == "eos")

    @property
    def device(self) -> torch.device:
        return self.backbone.model.get_input_embeddings().weight.device

    def train(self, mode: bool = True) -> "LaserModel":
        super().train(mode)
        self.backbone.train(mode)  # keeps the LLM in eval mode
        if self.encoder is not None:
            self.encoder.eval()
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Weights that training changes (M-Former / prefix / suffix), not the frozen LLM or encoder."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in names}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        own = self.trainable_state()
        if set(state) != set(own):
            raise ValueError(f"trainable weights differ: missing {sorted(set(own) - set(state))}, "
                             f"unexpected {sorted(set(state) - set(own))}")
        self.load_state_dict(state, strict=False)

    # -- Eq. 1: build the input ------------------------------------------------------
    def _prefix(self, histories: Sequence[Sequence[int]], is_item: bool) -> tuple[torch.Tensor | None, Embedding]:
        prefix, emb = self._raw_prefix(histories, is_item)
        if prefix is not None and self.prefix_norm is not None:
            prefix = nn.functional.normalize(prefix, dim=-1) * self.prefix_norm
        return prefix, emb

    def _raw_prefix(self, histories: Sequence[Sequence[int]], is_item: bool) -> tuple[torch.Tensor | None, Embedding]:
        b = len(histories)
        if self.mformer is not None:
            shown = self.tokens.kept(histories, is_item)  # the same items the text shows
            c, mask = self.encoder.encode([list(w) for w in shown], self.device)
            if self.cfg.bituning.prefix_input == "constant":  # diagnostic: the same input for every history
                c, mask = torch.zeros_like(c[:, :1]), torch.ones_like(mask[:, :1])
            out = self.mformer(c.to(self.device), mask.to(self.device))
            return out.prefix, Embedding(torch.empty(0), out.probs, mask.to(self.device))
        if self.prefix is not None:
            return self.prefix.unsqueeze(0).expand(b, -1, -1), Embedding(torch.empty(0))
        return None, Embedding(torch.empty(0))

    def embed(self, histories: Sequence[Sequence[int]], is_item: bool = False) -> Embedding:
        """Embeddings of item-index histories (an item = a history of one): Eqs. 1-2's h."""
        token_ids = self.tokens(histories, is_item)
        if self.cfg.bituning.suffix == "eos":
            token_ids = [np.append(t, self.backbone.eos_id) for t in token_ids]
        prefix, emb = self._prefix(histories, is_item)
        bb, dev = self.backbone, self.device
        lengths = [len(t) for t in token_ids]
        ids = torch.full((len(token_ids), max(lengths)), bb.pad_id, dtype=torch.long)
        for r, t in enumerate(token_ids):
            ids[r, : len(t)] = torch.from_numpy(t)
        with torch.no_grad():
            tok = bb.embed(ids.to(dev))
        rows = []
        for r, n in enumerate(lengths):
            parts = [tok[r, :n]]
            if prefix is not None:
                parts.insert(0, prefix[r].to(tok.dtype))
            if self.suffix is not None:
                parts.append(self.suffix.to(tok.dtype))
            rows.append(torch.cat(parts))
        embeds = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_side="left")
        if not torch.is_grad_enabled():  # few distinct shapes: CPU kernels keep state per shape
            extra = -embeds.shape[1] % NO_GRAD_PAD_MULTIPLE
            embeds = nn.functional.pad(embeds, (0, 0, extra, 0))
        row_len = torch.tensor([r.shape[0] for r in rows], device=dev)
        t = embeds.shape[1]
        mask = torch.arange(t, device=dev).unsqueeze(0) >= (t - row_len).unsqueeze(1)
        states = bb(embeds, mask)
        if self.suffix is not None:
            h = states[:, -self.suffix.shape[0]:].float().mean(dim=1)  # Figure 4: S states averaged
        elif self.cfg.bituning.suffix == "eos":
            h = states[:, -1].float()
        else:  # mean pooling: over every real position (paper: "all token embeddings") or the text's only
            if self.cfg.bituning.pool == "text":
                text_len = torch.tensor(lengths, device=dev)
                mask = torch.arange(t, device=dev).unsqueeze(0) >= (t - text_len).unsqueeze(1)
            m = mask.unsqueeze(-1).to(torch.float32)
            h = (states.float() * m).sum(dim=1) / m.sum(dim=1)
        emb.h = h
        return emb

    # -- Eqs. 6-10 -------------------------------------------------------------------
    def forward(self, histories: Sequence[Sequence[int]], targets: torch.Tensor, item_table: torch.Tensor) -> LaserOutput:
        """Loss of a batch of (history, next item) rows against the current item embeddings."""
        emb = self.embed(histories)
        l_iic = iic_loss(emb.h, item_table, targets.to(emb.h.device), self.cfg.loss.tau)
        l_lb = None if emb.probs is None else load_balancing_loss(emb.probs, emb.mask)
        return LaserOutput(total_loss(l_iic, l_lb, self.cfg.loss.lb_weight), l_iic, l_lb, emb.h)

    @torch.no_grad()
    def embed_items(self, n_items: int, batch_size: int, progress: Callable | None = None) -> torch.Tensor:
        """All item embeddings [I, H] (eval mode, no grad), batched by text length; ``batch_size`` 0 = the
        device's default (:data:`laser_repro.laser.config.NO_GRAD_BATCH`)."""
        batch_size = no_grad_batch(batch_size, "item", self.device.type)
        was_training = self.training
        self.eval()
        histories = [[i] for i in range(n_items)]
        lengths = np.array([len(t) for t in self.tokens(histories, is_item=True)])
        order = np.argsort(lengths, kind="stable")
        table = torch.empty(n_items, self.backbone.hidden_size, device=self.device)
        batches = [order[s : s + batch_size] for s in range(0, n_items, batch_size)]
        for idx in progress(batches) if progress else batches:
            table[torch.as_tensor(idx, device=self.device)] = self.embed([[int(i)] for i in idx], is_item=True).h
        self.train(was_training)
        return table

    @torch.no_grad()
    def embed_users(self, histories: Sequence[Sequence[int]], batch_size: int) -> torch.Tensor:
        """User embeddings [U, H] in eval mode, batched by text length (order preserved); ``batch_size`` 0 = the
        device's default (:data:`laser_repro.laser.config.NO_GRAD_BATCH`)."""
        batch_size = no_grad_batch(batch_size, "eval", self.device.type)
        was_training = self.training
        self.eval()
        lengths = np.array([len(t) for t in self.tokens(histories)])
        order = np.argsort(lengths, kind="stable")
        out = torch.empty(len(histories), self.backbone.hidden_size, device=self.device)
        for s in range(0, len(histories), batch_size):
            idx = order[s : s + batch_size]
            out[torch.as_tensor(idx, device=self.device)] = self.embed([histories[i] for i in idx]).h
        self.train(was_training)
        return out
