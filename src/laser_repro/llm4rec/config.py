"""The run config of ``laser-repro train-llm4rec`` (the official LLM4REC code's settings where they apply)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from laser_repro.config import NON_NEGATIVE, POSITIVE, POSITIVE_REAL, Range
from laser_repro.laser.hub import BACKBONES, check_name


@dataclass
class LLM4RecRunConfig:
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("device", "num_threads", "progress", "eval_batch_size", "cache_dir")
    RANGES: ClassVar[dict[str, Range]] = {
        "max_history": POSITIVE, "content_epochs": NON_NEGATIVE, "collab_epochs": NON_NEGATIVE,
        "finetune_max_epochs": NON_NEGATIVE, "patience": POSITIVE, "pretrain_lr": POSITIVE_REAL, "lr": POSITIVE_REAL,
        "batch_size": POSITIVE, "content_batch_size": POSITIVE, "max_train_users": POSITIVE, "max_train_rows": POSITIVE,
        "max_valid_users": POSITIVE, "max_eval_users": POSITIVE, "seed": NON_NEGATIVE, "num_threads": NON_NEGATIVE,
        "eval_batch_size": POSITIVE,
    }
    dataset: str = ""
    data_fingerprint: str | None = None
    method: Literal["llm4rec"] = "llm4rec"
    backbone: str = "gpt2-large"  # Laser's LLM baselines share its GPT2-Large; offline: tiny-gpt2, smollm2
    cache_dir: str | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # CPU: auto = bf16 autocast where the CPU has bf16 units
    graph_bias: bool = True
    train_backbone: bool = True  # LLM4REC as committed trains GPT-2 (CLLM4Rec froze it)
    max_history: int = 50
    content_epochs: int = 3  # official num_pretrained_epochs
    collab_epochs: int = 3  # official: 100 (set-based); fewer here, recorded
    finetune_max_epochs: int = 50
    patience: int = 5
    pretrain_lr: float = 1e-3  # official Adam lr (pre-training)
    lr: float = 1e-4  # official fine-tuning lr
    content_batch_size: int = 4  # official batch_size_review
    batch_size: int = 32  # the collaborative stage and fine-tuning (official batch_size_collaborative)
    max_train_users: int | None = None
    max_train_rows: int | None = None
    max_valid_users: int | None = None
    max_eval_users: int | None = None
    seed: int = 0
    ties: Literal["pessimistic", "optimistic"] = "pessimistic"
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True
    eval_batch_size: int = 64

    def check(self) -> None:
        check_name("backbone", self.backbone, BACKBONES)
