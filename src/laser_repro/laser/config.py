"""The Laser run config: every switch of Tables 2-5 and Figures 3-5 is one key here.

A run config is a YAML file mapped onto :class:`LaserRunConfig` (``laser_repro.config``);
each default below is the paper's (App. B) or the spec's, written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from laser_repro.config import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_REAL, ConfigError, Range
from laser_repro.laser.hub import BACKBONES, check_name

TemplateVariant = Literal["paper", "no-phrase", "no-instruction", "two-instructions"]


@dataclass
class TemplateConfig:
    RANGES: ClassVar[dict[str, Range]] = {"window": POSITIVE, "max_tokens": POSITIVE}
    variant: TemplateVariant = "paper"  # Table 5: no-phrase / no-instruction / two-instructions
    category_field: Literal["brand", "category"] = "brand"  # paper's bug: brand in the category slot
    window: int = 10  # last items of a history, for the text and the collaborative input
    max_tokens: int = 480  # text tokens (prefix/suffix excluded); oldest items dropped first


@dataclass
class BiTuningConfig:
    RANGES: ClassVar[dict[str, Range]] = {"n_suffix": POSITIVE, "n_prefix": POSITIVE}
    prefix: Literal["mformer", "learnable", "none"] = "mformer"  # Table 3: w/o M-Former, w/o prefix
    suffix: Literal["learnable", "mean", "eos"] = "learnable"  # Table 3: w/o suffix (mean / [EOS])
    n_suffix: int = 1  # S (Figure 4): suffix vectors appended; their output states are averaged
    n_prefix: int = 32  # L for the "learnable" prefix (w/o M-Former); the M-Former uses mformer.n_queries
    pool: Literal["all", "text"] = "all"  # suffix: mean pools all real positions (paper) or the text's only
    # Diagnostic, not in the paper: "token" rescales every prefix vector to the backbone's mean token-embedding
    # norm (issue 11: does the M-Former's output scale stop a decoder from learning?); "free" = paper
    prefix_scale: Literal["free", "token"] = "free"
    # Diagnostic, not in the paper: "constant" feeds the M-Former one fixed input (a single zero collaborative
    # embedding) for every history, so its prefix no longer depends on the input (issue 11: is that what stops a
    # decoder from learning?); "collaborative" = paper (Eqs. 4-5 on the history's ID embeddings)
    prefix_input: Literal["collaborative", "constant"] = "collaborative"

    def check(self) -> None:
        if self.prefix_scale == "token" and self.prefix == "none":
            raise ConfigError("prefix_scale: token rescales the prefix, but prefix is none (set prefix_scale: free)")
        if self.prefix_input == "constant" and self.prefix != "mformer":
            raise ConfigError(f"prefix_input: constant changes the M-Former's input, but prefix is {self.prefix} "
                              "(set prefix_input: collaborative, or prefix: mformer)")


@dataclass
class MFormerConfig:
    RANGES: ClassVar[dict[str, Range]] = {k: POSITIVE for k in ("n_experts", "top_k", "n_queries", "d_model", "n_layers",
                                                                "n_heads", "cross_attention_freq", "intermediate")}
    RANGES["dropout"] = Range(0, 1)
    RANGES["query_init_std"] = POSITIVE_REAL
    n_experts: int = 8  # K
    top_k: int = 3  # experts activated per input
    n_queries: int = 32  # L query vectors per expert = prefix length
    d_model: int = 768  # d_m
    n_layers: int = 12  # Z
    n_heads: int = 12
    cross_attention_freq: int = 2  # BLIP-2 Q-Former: cross-attention in blocks 0, 2, 4, ...
    intermediate: int = 3072  # feed-forward width
    dropout: float = 0.1  # BERT/Q-Former default (authors' code)
    aggregation: Literal["raw", "renormalize", "softmax"] = "raw"  # weights of the selected experts
    # the queries' initial std (BLIP-2: initializer_range 0.02). They pass a LayerNorm first, so it sets only how far
    # one optimiser step turns them (about lr / std for Adam), not what the M-Former computes (issue 11 diagnostic)
    query_init_std: float = 0.02

    def check(self) -> None:
        if self.top_k > self.n_experts:
            raise ConfigError(f"top_k: {self.top_k} experts cannot be selected from n_experts = {self.n_experts} "
                              "(set top_k <= n_experts)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"n_heads: d_model = {self.d_model} does not split evenly over {self.n_heads} heads")


@dataclass
class LossConfig:
    RANGES: ClassVar[dict[str, Range]] = {"tau": POSITIVE_REAL, "lb_weight": NON_NEGATIVE}
    tau: float = 0.05  # Eq. 6 temperature
    lb_weight: float = 0.01  # lambda in Eq. 10 (App. B); Figure 4 sweeps it


@dataclass
class PhaseConfig:
    RANGES: ClassVar[dict[str, Range]] = {"phase1_max_epochs": NON_NEGATIVE, "phase1_patience": POSITIVE,
                                          "phase2_epochs": NON_NEGATIVE}
    phase1: bool = True  # False = "w/o phase 1": item embeddings from the untrained model
    phase2: bool = True  # False = "w/o phase 2"
    phase1_max_epochs: int = 15
    phase1_patience: int = 3  # epochs without a better validation NDCG@10 before phase 1 ends
    phase2_epochs: int = 5


@dataclass
class OptimConfig:
    RANGES: ClassVar[dict[str, Range]] = {"lr": POSITIVE_REAL, "weight_decay": NON_NEGATIVE, "batch_size": POSITIVE,
                                          "grad_accumulation": POSITIVE, "warmup_steps": NON_NEGATIVE,
                                          "max_grad_norm": NON_NEGATIVE, "length_buckets": POSITIVE}
    optimizer: Literal["adam", "adamw"] = "adam"  # paper: Adam; authors' configs: AdamW
    lr: float = 1e-4
    weight_decay: float = 0.0  # authors' configs: 0.05 with adamw
    batch_size: int = 4
    grad_accumulation: int = 1  # authors' configs: effective batch 32
    scheduler: Literal["none", "cosine"] = "none"  # authors' configs: warmup + cosine, per phase (fresh)
    warmup_steps: int = 0
    max_grad_norm: float = 0.0  # 0 = no clipping
    phase2_optimizer: Literal["carry", "fresh"] = "carry"  # RecFormer (issue 11); the authors' code: fresh
    length_buckets: int = 32  # rows of similar length share a batch (sorted within runs of this many batches); 1 = off


# No-grad batch sizes (users at evaluation, items in a refresh) when the run config leaves them at 0. CPU: the
# sizes that measured fastest for MiniLM and SmolLM2 (benchmarks/laser_batches.md: 1.2-2x the old 64 / 128);
# GPU: the sizes chosen before any GPU ran.
NO_GRAD_BATCH = {"cpu": {"eval": 16, "item": 32}, "gpu": {"eval": 64, "item": 128}}


def no_grad_batch(size: int, kind: str, device_type: str) -> int:
    """``size``, or when it is 0 the default of ``kind`` ("eval" | "item") on a ``device_type`` device."""
    return size or NO_GRAD_BATCH["cpu" if device_type == "cpu" else "gpu"][kind]


@dataclass
class LaserRunConfig:
    # How a run executes, not what it trains: may change between resumed sessions.
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("device", "num_threads", "progress", "eval_batch_size",
                                                 "item_batch_size", "cache_dir")
    INPUT_RUNS: ClassVar[tuple[str, ...]] = ("idrec_run", "init_from")  # fingerprinted into the resume contract
    HASH_NEUTRAL: ClassVar[dict[str, Any]] = {"bituning.prefix_scale": "free",  # added later: runs before stay valid
                                              "bituning.prefix_input": "collaborative",
                                              "mformer.query_init_std": 0.02}
    RANGES: ClassVar[dict[str, Range]] = {
        "min_train_history": POSITIVE, "max_train_users": POSITIVE, "train_user_fraction": FRACTION,
        "max_eval_users": POSITIVE, "max_valid_users": POSITIVE, "test_curve_users": NON_NEGATIVE, "seed": NON_NEGATIVE, "num_threads": NON_NEGATIVE, "eval_batch_size": NON_NEGATIVE,
        "item_batch_size": NON_NEGATIVE,
    }

    dataset: str = ""  # prepared data set folder (laser-repro data prepare)
    data_fingerprint: str | None = None  # the data set's stats.json fingerprint this config was written for; null = any
    idrec_run: str | None = None  # train-idrec output folder feeding the M-Former; null = random encoder
    idrec_model: str = "bert4rec"  # architecture of the random encoder when idrec_run is null
    backbone: str = "minilm"  # gpt2-large | chatglm2-6b | llama2-7b | local:PATH | tiny-gpt2 | tiny-llama | minilm | smollm2
    backbone_revision: str | None = None  # hub revision; null = the registry's pinned one
    backbone_precision: Literal["auto", "fp32", "bf16"] = "auto"  # CPU: auto = bf16 autocast where the CPU has bf16
    cache_dir: str | None = None  # tiny-backbone tokenizers; null = $LASER_REPRO_CACHE or ~/.cache/laser-repro
    template: TemplateConfig = field(default_factory=TemplateConfig)
    bituning: BiTuningConfig = field(default_factory=BiTuningConfig)
    mformer: MFormerConfig = field(default_factory=MFormerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    phases: PhaseConfig = field(default_factory=PhaseConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    min_train_history: int = 2  # training row = (prefix of >= this many items, next item)
    max_train_users: int | None = None  # cap on training users (smoke runs); null = all
    train_user_fraction: float | None = None  # Figure 3: seeded fraction via data.splits.sample_train_users
    max_eval_users: int | None = None  # seeded cap on validation/test users (smoke runs only); null = all
    max_valid_users: int | None = None  # seeded cap on validation users only (selection); null = max_eval_users
    init_from: str | None = None  # a Laser run folder whose model.pt initialises the trainable weights
    method: str | None = None  # registered method (laser-g/-c/-l; laser-repro methods); null = "laser" (stand-alone)
    seed: int = 0
    test_curve_users: int = 0  # learning curve: test a seeded subset of this many users after every epoch
    #                            (never selects); 0 = off; >= the test users = all of them
    ties: Literal["pessimistic", "optimistic"] = "pessimistic"
    device: str = "auto"  # auto = cuda if available else cpu
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    eval_batch_size: int = 0  # users embedded per forward pass at evaluation; 0 = by device (NO_GRAD_BATCH)
    item_batch_size: int = 0  # items embedded per forward pass in an item refresh; 0 = by device (NO_GRAD_BATCH)
    progress: bool = True  # tqdm progress bars on stderr

    def check(self) -> None:
        from laser_repro.experiment.registry import methods_of

        check_name("backbone", self.backbone, BACKBONES)
        if self.method is not None and self.method not in methods_of("laser"):
            raise ConfigError(f"method: {self.method!r} is not a Laser method; expected one of {methods_of('laser')} "
                              "or null (a stand-alone run)")

    def unread_inputs(self) -> tuple[str, ...]:
        """Input runs this config names but never reads (not fingerprinted: train.scaffold.input_fingerprints):
        the ID model feeds only the M-Former, so w/o M-Former and w/o prefix never read ``idrec_run``."""
        return ("idrec_run",) if self.bituning.prefix != "mformer" else ()

    def test_keys(self) -> tuple[str, ...]:
        """Keys that change only which users the final test ranks (train.scaffold "Retest"): ``max_eval_users``
        once ``max_valid_users`` caps validation (else it caps validation, and so selection, too)."""
        return ("max_eval_users",) if self.max_valid_users is not None else ()
