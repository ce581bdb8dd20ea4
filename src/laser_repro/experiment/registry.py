"""Every method of the suite, declared once (as lm-evaluation-harness declares its tasks).

A :class:`Method` is a Table 2 row (or a model only Figure 5 uses): its name, label and
group, the :class:`Trainer` that runs it (CLI command, run-config dataclass, train function)
and what a run needs (a prepared data set always; an ID-model run for Laser's M-Former; a
backbone). The Snakefile, ``laser-repro methods``, the run planner and the artifacts all
look methods up here; adding a method is its own module plus one entry in :data:`METHODS`.

Imports nothing heavy: the Snakefile reads this module, so classes are named as
``"module:attribute"`` strings and imported only when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# Table 2's groups, in the paper's order, with their headings.
GROUPS: dict[str, str] = {
    "traditional": "Traditional Methods",
    "gpt2": "Methods based on GPT2",
    "chatglm2": "Methods based on ChatGLM2",
    "llama2": "Methods based on Llama2",
}


def import_object(ref: str) -> Any:
    """``"package.module:attr"`` -> the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Trainer:
    """How runs of a method are trained: ``laser-repro COMMAND --config RUN.yaml --out DIR``."""

    name: str  # key of `run:` in config.yaml (overrides for every run of this trainer)
    command: str  # the laser-repro sub-command
    config_class: str  # "module:Class" of the run-config dataclass
    train: str  # "module:function" (cfg, out_dir) -> metrics record
    method_key: str  # run-config key that names the method (idrec: model; laser: method)
    compute: str  # "small" (ID-sized models) or "large" (through a language-model backbone): see Method.compute
    backbone_key: str = "backbone"  # run-config key naming the pretrained model a method's runs use
    config_of: str = ""  # "module:function" cfg -> the config its resume hash covers ("": the resolved cfg)

    def config_cls(self) -> type:
        return import_object(self.config_class)

    def resume_config(self, cfg) -> dict | None:
        """The config a run's resume hash covers (None: the resolved ``cfg`` itself)."""
        return import_object(self.config_of)(cfg) if self.config_of else None


@dataclass(frozen=True)
class Method:
    """One method: a Table 2 row (``group``) or a model used only elsewhere (``group=None``)."""

    name: str  # run folder name: {runs}/{dataset}/{name}/{variant}/seed~{seed}
    label: str  # as the paper prints it
    group: str | None  # Table 2 group (GROUPS) or None
    trainer: Trainer
    paper_backbone: str | None = None  # the backbone (or text encoder) the paper uses; any other is a stand-in
    collaborative: bool = False  # its runs are fed by an ID-model run (Laser's M-Former input)
    ours: bool = False  # Laser's rows: bold / Improv.% against the best baseline
    in_paper: bool = True  # False: run by this suite for another artifact, labelled as such in Table 2
    pretrained_on: str | None = None  # the paper's run was pre-trained on this corpus (runs without init_from: ‡)
    run_defaults: tuple[tuple[str, Any], ...] = ()  # (dotted run-config key, value): this method's own settings
    needs_runs: tuple[tuple[str, str], ...] = ()  # (run-config key, method): main runs of another method it reads
    knowledge: bool = False  # reads a KAR knowledge file (rule kar_knowledge), named by its knowledge_generator
    more_backbone_keys: tuple[str, ...] = ()  # other run-config keys naming a pretrained model (paper: paper_backbone)
    summary: str = ""

    def base_config(self) -> dict[str, Any]:
        """Run-config keys that make a run of the trainer a run of this method."""
        out: dict[str, Any] = {self.trainer.method_key: self.name}
        if self.paper_backbone:
            out[self.trainer.backbone_key] = self.paper_backbone
        out.update(self.run_defaults)
        return out

    @property
    def compute(self) -> str:
        """Its runs' cost class, which names their training rule ``train_{compute}`` (the SLURM profile sizes each):
        ``large`` through a language-model backbone; ``small_gpu`` an ID-sized model whose item or user text a
        frozen language model encodes first (FDSA and ZESRec with BERT, KAR with ChatGLM2-6B); ``small`` ID only."""
        if self.trainer.compute == "large":
            return "large"
        return "small_gpu" if self.paper_backbone or self.knowledge else "small"

    @property
    def needs(self) -> list[str]:
        """What a run needs besides its config: shown by ``laser-repro methods``."""
        out = ["prepared data set"]
        if self.collaborative:
            out.append("ID-model run (collaborative)")
        if self.paper_backbone:
            out.append(f"backbone ({self.paper_backbone} in the paper)")
        out += [f"{method} run ({key})" for key, method in self.needs_runs]
        if self.knowledge:
            out.append("knowledge file (laser-repro kar-knowledge)")
        return out


IDREC = Trainer("idrec", "train-idrec", "laser_repro.idrec.config:IDRecRunConfig",
                "laser_repro.idrec.trainer:train_idrec", method_key="model", compute="small",
                config_of="laser_repro.idrec.trainer:resolved_config",
                backbone_key="text_encoder")
LASER = Trainer("laser", "train-laser", "laser_repro.laser.config:LaserRunConfig",
                "laser_repro.laser.trainer:train_laser", method_key="method", compute="large")
RECFORMER = Trainer("recformer", "train-recformer", "laser_repro.recformer.config:RecformerRunConfig",
                    "laser_repro.recformer.trainer:train_recformer", method_key="method", compute="large",
                    backbone_key="encoder")

LLAMAREC = Trainer("llamarec", "train-llamarec", "laser_repro.llamarec.config:LlamaRecRunConfig",
                   "laser_repro.llamarec.trainer:train_llamarec", method_key="method", compute="large")

LLM4REC = Trainer("llm4rec", "train-llm4rec", "laser_repro.llm4rec.config:LLM4RecRunConfig",
                  "laser_repro.llm4rec.trainer:train_llm4rec", method_key="method", compute="large")

TRAINERS: dict[str, Trainer] = {t.name: t for t in (IDREC, LASER, RECFORMER, LLAMAREC, LLM4REC)}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sasrec", "SASRec", "traditional", IDREC, summary="self-attentive sequential recommender (ID)"),
    Method("bert4rec", "BERT4Rec", "traditional", IDREC, summary="bidirectional cloze recommender (ID)"),
    Method("gru4rec", "GRU4Rec", "traditional", IDREC, in_paper=False,
           summary="GRU recommender (ID); Figure 5 feeds Laser with it"),
    Method("fdsa", "FDSA", "traditional", IDREC, paper_backbone="bert-base-uncased",  # UniSRec's FDSA: BERT features
           run_defaults=(("model_config.text_dim", 768),),  # BERT-base's width (MiniLM runs set 384)
           summary="feature-level self-attention (ID + item text)"),
    Method("recguru", "RecGURU", "traditional", IDREC, run_defaults=(("lr", 0.01), ("batch_size", 1024)),
           summary="Transformer autoencoder, single domain (reconstruction, then BPR)"),
    Method("zesrec", "ZESRec", "traditional", IDREC, paper_backbone="bert-base-uncased",
           pretrained_on="RecFormer's corpus (seven Amazon categories)",
           summary="frozen LM item features -> item MLP -> causal Transformer (text only)"),
    Method("lrurec", "LRURec", None, IDREC, in_paper=False,
           run_defaults=(("optimizer", "adamw"), ("lr", 0.001), ("weight_decay", 0.01), ("batch_size", 64),
                         ("select_metric", "recall@10")),
           summary="linear recurrent units (ID); LlamaRec's retriever"),
    Method("recformer", "RECFORMER", "traditional", RECFORMER, paper_backbone="allenai/longformer-base-4096",
           pretrained_on="RecFormer's corpus (seven Amazon categories)",
           summary="Longformer over key-value item text, ID-free; two-stage fine-tuning"),
    Method("llm4rec", "LLM4REC", "gpt2", LLM4REC, paper_backbone="gpt2-large",
           summary="GPT-2 with user/item tokens and a graph attention bias (leave-one-out port)"),
    Method("laser-g", "Laser-G", "gpt2", LASER, paper_backbone="gpt2-large", collaborative=True, ours=True,
           summary="Laser on GPT2-Large"),
    Method("kar", "KAR", "chatglm2", IDREC, paper_backbone="chatglm2-6b", knowledge=True,
           more_backbone_keys=("knowledge_generator",),  # ChatGLM2 writes the knowledge and encodes it
           summary="LLM knowledge (prompts -> texts -> encoder) fused into SASRec by hybrid experts"),
    Method("laser-c", "Laser-C", "chatglm2", LASER, paper_backbone="chatglm2-6b", collaborative=True, ours=True,
           summary="Laser on ChatGLM2-6B"),
    Method("llamarec", "LlamaRec", "llama2", LLAMAREC, paper_backbone="llama2-7b",
           needs_runs=(("retriever_run", "lrurec"),),
           summary="LRURec retrieves 20, a LoRA-tuned LLM ranks them by letter (composite score)"),
    Method("laser-l", "Laser-L", "llama2", LASER, paper_backbone="llama2-7b", collaborative=True, ours=True,
           summary="Laser on Llama2-7B"),
)}


def get_method(name: str, where: str = "method") -> Method:
    """The registered method ``name``; the error names ``where`` and lists the methods."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"{where}: {name!r} is not a registered method; expected one of {sorted(METHODS)} "
                       "(laser-repro methods)") from None


KNOWLEDGE_WITHOUT_LLM = ("template",)  # KAR knowledge generators that run no language model (kar.knowledge)
# KAR's prompts (kar.knowledge); v2 (2026-12-07): the user prompt's closing sentence, as in KAR's code. A rule
# parameter of the knowledge rules, so a new version regenerates the files (their texts are keyed by it)
KNOWLEDGE_PROMPT_VERSION = "kar-product-v2"
COMPUTE = ("small", "small_gpu", "large")  # Method.compute's values: the training rules train_{compute}


def methods_of(trainer: str) -> list[str]:
    return [m.name for m in METHODS.values() if m.trainer.name == trainer]


def table2_methods() -> list[str]:
    """Every registered Table 2 row, in registry order (``table2.methods: all``)."""
    return [m.name for m in METHODS.values() if m.group is not None]


def stand_in(method: str, backbone: str | None) -> str | None:
    """The backbone a run used when it is not the paper's (else None); unregistered methods: any backbone."""
    m = METHODS.get(method)
    if m is None:
        return backbone
    if m.paper_backbone is None:
        return None
    used = backbone or "unknown"
    return None if used == m.paper_backbone else used
