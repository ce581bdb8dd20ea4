"""The run config of ``laser-repro train-recformer`` (official RecFormer code's settings as defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from laser_repro.config import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_REAL, PROBABILITY, Range


@dataclass
class PretrainConfig:
    """Pre-training: in-batch item-item contrastive + ``mlm_weight`` x MLM on prepared data sets."""

    RANGES: ClassVar[dict[str, Range]] = {"steps": NON_NEGATIVE, "batch_size": POSITIVE, "lr": POSITIVE_REAL,
                                          "mlm_weight": NON_NEGATIVE, "mlm_probability": PROBABILITY}
    datasets: list[str] = field(default_factory=list)  # prepared data set folders (the paper: 7 Amazon categories)
    steps: int = 0  # optimiser steps; 0 = no pre-training (the run's encoder is used as is)
    batch_size: int = 64  # paper: 64 (code: 16 x 8 accumulation x 4 GPUs)
    lr: float = 5e-5
    mlm_weight: float = 0.1
    mlm_probability: float = 0.15  # 80% [MASK], 10% random, 10% kept


@dataclass
class RecformerRunConfig:
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("device", "num_threads", "progress", "eval_batch_size",
                                                 "item_batch_size")
    INPUT_RUNS: ClassVar[tuple[str, ...]] = ("init_from",)  # fingerprinted into the resume contract
    INPUT_FILES: ClassVar[tuple[str, ...]] = ("init_checkpoint",)
    INPUT_DATASETS: ClassVar[tuple[str, ...]] = ("pretrain.datasets",)
    RANGES: ClassVar[dict[str, Range]] = {
        "max_items": POSITIVE, "max_tokens": POSITIVE, "max_attr_tokens": POSITIVE, "attention_window": POSITIVE,
        "tau": POSITIVE_REAL, "lr": POSITIVE_REAL, "weight_decay": NON_NEGATIVE, "batch_size": POSITIVE,
        "grad_accumulation": POSITIVE, "warmup_steps": NON_NEGATIVE, "schedule_epochs": POSITIVE,
        "eval_every": POSITIVE, "stage1_max_epochs": NON_NEGATIVE, "stage1_patience": POSITIVE,
        "stage2_max_epochs": NON_NEGATIVE, "stage2_patience": POSITIVE, "train_user_fraction": FRACTION,
        "max_train_users": POSITIVE, "max_valid_users": POSITIVE, "max_eval_users": POSITIVE, "seed": NON_NEGATIVE,
        "num_threads": NON_NEGATIVE, "eval_batch_size": POSITIVE, "item_batch_size": POSITIVE,
        "max_grad_norm": NON_NEGATIVE,
    }

    dataset: str = ""  # prepared data set folder
    data_fingerprint: str | None = None
    method: Literal["recformer"] = "recformer"
    encoder: str = "allenai/longformer-base-4096"  # | local:PATH | minilm (offline stand-in) | tiny (tests)
    init_checkpoint: str | None = None  # a released RecFormer checkpoint (state dict) loaded over the encoder
    init_from: str | None = None  # a finished RECFORMER run folder whose model.pt initialises this run
    max_items: int = 50
    max_tokens: int = 1024  # paper; the README finds 512 / 256 nearly as good
    max_attr_tokens: int = 32
    attention_window: int = 64
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # CPU: auto = bf16 autocast where the CPU has bf16 units
    tau: float = 0.05
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    # fine-tuning (official finetune.py / finetune.sh)
    lr: float = 5e-5  # AdamW
    weight_decay: float = 0.0
    batch_size: int = 16
    grad_accumulation: int = 8
    warmup_steps: int = 100
    schedule_epochs: int = 128  # the linear decay spans this many epochs (official: num_train_epochs 128)
    max_grad_norm: float = 0.0  # official finetune.py: no clipping (0 = off; pre-training clips at 1.0)
    eval_every: int = 3  # both stages validate every this many epochs (and at their last)
    stage1_max_epochs: int = 128
    stage1_patience: int = 5  # validations without a better NDCG@10
    stage2_max_epochs: int = 128
    stage2_patience: int = 3
    train_user_fraction: float = 1.0  # Figure 3: seeded fraction of training users (0 = zero-shot)
    max_train_users: int | None = None  # seeded cap (CPU benchmarks; recorded)
    max_valid_users: int | None = None  # seeded validation cap (selection only)
    max_eval_users: int | None = None  # seeded cap on validation and test (smoke runs only)
    seed: int = 42  # official
    ties: Literal["pessimistic", "optimistic"] = "pessimistic"  # official: optimistic (spec: the suite's rule)
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True
    eval_batch_size: int = 32
    item_batch_size: int = 64
