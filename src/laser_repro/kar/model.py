"""KAR's hybrid-expert adaptor (HEA) fused into a sequential host for full ranking (Xi et al., 2023).

HEA (official ``RS/layers.py``): two towers, user knowledge and item knowledge. Each tower gates
``shared`` experts (common to both towers) and ``specific`` experts of its own with a softmax over
Linear(d_in -> shared + specific); each expert is an MLP [128, 32] with ReLU. A tower's output
depends on its own input only.

Host: SASRec (the paper names none; KAR's own code has no sequential full-ranking model; SASRec is
UniSRec's base). Fusion at the scoring layer: item vector = the host's item embedding + a
projection of the item tower's output; user vector = the host's state + a projection of the user
tower's output (concatenation followed by a linear map is the same sum). Knowledge vectors are
fixed buffers (the encoded texts). The trainer appends each row's user index as a last token
column (``needs_users``); this model strips it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from laser_repro.config import POSITIVE, Range
from laser_repro.idrec.base import MODEL_RANGES, SeqRecModel, check_heads
from laser_repro.idrec.sasrec import SASRec, SASRecConfig


@dataclass
class KARConfig(SASRecConfig):
    RANGES: ClassVar[dict[str, Range]] = {**MODEL_RANGES, "shared_experts": POSITIVE, "specific_experts": POSITIVE,
                                          "expert_hidden": POSITIVE, "expert_out": POSITIVE}
    check = check_heads

    shared_experts: int = 2  # S
    specific_experts: int = 5  # P per tower (run scripts: 5; argparse default 6)
    expert_hidden: int = 128
    expert_out: int = 32
    # training rows: "after_window" the targets after the user's knowledge window (KAR's code); "every_prefix" every
    # training prefix (this suite's protocol for the other models; KAR here until 2026-12-07)
    train_targets: Literal["after_window", "every_prefix"] = "after_window"


def mix(gate_logits: torch.Tensor, expert_outputs: torch.Tensor) -> torch.Tensor:
    """HEA's mixture: softmax(gate_logits) ``[B, E]`` weighting expert outputs ``[B, E, d]`` -> ``[B, d]``."""
    return (F.softmax(gate_logits, dim=-1).unsqueeze(-1) * expert_outputs).sum(dim=1)


class HEA(nn.Module):
    TOWERS = ("user", "item")

    def __init__(self, d_in: int, shared: int, specific: int, hidden: int = 128, out: int = 32):
        super().__init__()

        def expert() -> nn.Module:
            return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, out), nn.ReLU())

        self.shared = nn.ModuleList(expert() for _ in range(shared))
        self.specific = nn.ModuleDict({t: nn.ModuleList(expert() for _ in range(specific)) for t in self.TOWERS})
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, shared + specific) for t in self.TOWERS})

    def forward(self, x: torch.Tensor, tower: str) -> torch.Tensor:
        experts = list(self.shared) + list(self.specific[tower])
        return mix(self.gates[tower](x), torch.stack([e(x) for e in experts], dim=1))


class KAR(SeqRecModel):
    name = "kar"
    needs_users = True  # the trainer appends each row's user index as the last token column
    features = ("item_knowledge", "user_knowledge")  # encoded knowledge texts, built by the trainer

    def __init__(self, n_items: int, config: KARConfig, item_knowledge: torch.Tensor, user_knowledge: torch.Tensor):
        super().__init__()
        if item_knowledge.shape[0] != n_items or item_knowledge.shape[1] != user_knowledge.shape[1]:
            raise ValueError(f"KAR knowledge shapes: items {tuple(item_knowledge.shape)} (expected {n_items} rows), "
                             f"users {tuple(user_knowledge.shape)} (same width)")
        self.n_items, self.config, self.hidden = n_items, config, config.hidden
        self.host = SASRec(n_items, SASRecConfig(**{f.name: getattr(config, f.name) for f in fields(SASRecConfig)}))
        self.register_buffer("item_knowledge", item_knowledge.float())
        self.register_buffer("user_knowledge", user_knowledge.float())
        c = config
        self.hea = HEA(item_knowledge.shape[1], c.shared_experts, c.specific_experts, c.expert_hidden, c.expert_out)
        self.item_proj = nn.Linear(c.expert_out, c.hidden)
        self.user_proj = nn.Linear(c.expert_out, c.hidden)

    @property
    def history_len(self) -> int:
        return self.config.max_len

    def make_instances(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The host's next-item rows of each training sequence from position ``history_window(n)`` on: the targets
        before it are titles of the user's knowledge text (``kar.knowledge.user_titles``), so training on them
        would read the answer from the user tower; KAR's code trains only after its history window too."""
        from laser_repro.kar.knowledge import history_window

        if self.config.train_targets == "every_prefix":
            return self.host.make_instances(sequences)
        rows, targets = [], []
        for s in sequences:
            tokens, target = self.host.make_instances([s])  # t = 1 .. n-1, in order
            keep = np.arange(1, len(s)) >= history_window(len(s))
            rows.append(tokens[keep])
            targets.append(target[keep])
        if not rows:
            return np.zeros((0, self.config.max_len), np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(targets)

    def sequence_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.host.sequence_states(tokens)

    def item_embeddings(self) -> torch.Tensor:
        return self.host.item_embeddings() + self.item_proj(self.hea(self.item_knowledge, "item"))

    def full_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens``: history tokens with the user index as the last column."""
        hist, users = tokens[:, :-1], tokens[:, -1]
        user = self.host.user_states(hist) + self.user_proj(self.hea(self.user_knowledge[users], "user"))
        return user @ self.item_embeddings().T
