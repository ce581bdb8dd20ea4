"""The run config of ``laser-repro train-llamarec`` (the official LlamaRec code's settings as defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from laser_repro.config import NON_NEGATIVE, POSITIVE, POSITIVE_REAL, PROBABILITY, Range
from laser_repro.laser.hub import CAUSAL_LMS, check_name


@dataclass
class LlamaRecRunConfig:
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("device", "num_threads", "progress", "eval_batch_size", "cache_dir")
    INPUT_RUNS: ClassVar[tuple[str, ...]] = ("retriever_run",)  # fingerprinted into the resume contract
    RANGES: ClassVar[dict[str, Range]] = {
        "n_candidates": Range(1, 20), "max_history": POSITIVE, "max_title_tokens": POSITIVE,
        "max_prompt_tokens": POSITIVE, "lora_r": POSITIVE, "lora_alpha": POSITIVE_REAL, "lora_dropout": PROBABILITY,
        "lr": POSITIVE_REAL, "epochs": NON_NEGATIVE, "warmup_steps": NON_NEGATIVE, "batch_size": POSITIVE,
        "eval_steps": POSITIVE, "patience": POSITIVE,
        "max_train_users": POSITIVE, "max_train_rows": POSITIVE, "max_valid_users": POSITIVE,
        "max_eval_users": POSITIVE, "seed": NON_NEGATIVE, "num_threads": NON_NEGATIVE, "eval_batch_size": POSITIVE,
    }

    dataset: str = ""
    data_fingerprint: str | None = None
    method: Literal["llamarec"] = "llamarec"
    retriever_run: str | None = None  # a finished LRURec run (train-idrec, model lrurec): the retriever
    backbone: str = "llama2-7b"  # | smollm2 (offline stand-in) | tiny-llama (tests) | local:PATH
    cache_dir: str | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # CPU: auto = bf16 autocast where the CPU has bf16 units
    quantize: Literal["auto", "none", "4bit"] = "auto"  # auto = QLoRA (NF4) where CUDA and bitsandbytes exist
    n_candidates: int = 20  # letters A-T over the retriever's top 20
    max_history: int = 20  # last history items in the prompt
    max_title_tokens: int = 32
    max_prompt_tokens: int = 1536  # left-truncated
    lora_r: int = 8
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    lr: float = 1e-4
    epochs: int = 1
    warmup_steps: int = 100  # then linear decay to 0 (the HF Trainer's default), gradients clipped at norm 1
    eval_steps: int = 100  # validate every this many optimiser steps (and at the last)
    patience: int = 20  # validations without a better NDCG@10 before stopping (official EarlyStoppingCallback)
    batch_size: int = 12  # micro-batch of the official code
    max_train_users: int | None = None  # seeded caps (CPU runs; recorded)
    max_train_rows: int | None = None
    max_valid_users: int | None = None
    max_eval_users: int | None = None
    mask_history: bool = False  # the retriever masks history items (LlamaRec: yes; the suite's protocol: no)
    # training negatives: "as_candidates" avoid the history only when the retriever masks it (the test's candidates
    # hold history items otherwise); "outside_history" always (LlamaRec's code; this suite until 2026-12-07)
    negatives: Literal["as_candidates", "outside_history"] = "as_candidates"
    seed: int = 0
    ties: Literal["pessimistic", "optimistic"] = "pessimistic"
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True
    eval_batch_size: int = 8

    def check(self) -> None:
        check_name("backbone", self.backbone, CAUSAL_LMS)
