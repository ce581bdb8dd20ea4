"""LlamaRec's ranker: a causal LLM with LoRA adapters (peft) that reads the prompt and scores letters.

LoRA r 8, alpha 32, dropout 0.05 on ``q_proj``/``v_proj`` (official). At paper scale the base
model is Llama-2-7b in 4-bit NF4 with double quantisation (QLoRA) where CUDA and bitsandbytes
exist, plain LoRA otherwise. Offline: ``smollm2`` (SmolLM2-135M-Instruct, a real Llama-family
decoder, :func:`laser_repro.laser.backbones.smollm2_folder`) or ``tiny-llama`` (random, tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from laser_repro.laser.backbones import (HUB, BackboneLoadError, _cache_root, _load_chatglm2, _patch_chatglm2_tokenizer,
                                         smollm2_folder, tiny_tokenizer)
from laser_repro.laser.hub import CAUSAL_LMS
from laser_repro.llamarec.scoring import LETTERS
from laser_repro.train.scaffold import cpu_autocast, fp32_attention

log = logging.getLogger("laser_repro.llamarec")


@dataclass
class Ranker:
    model: nn.Module  # a peft model
    tokenizer: Any
    letter_ids: list[int]
    stand_in: bool
    quantized: bool
    autocast: bool = False  # bf16 autocast of the forward pass on CPU (attention in fp32: scaffold.fp32_attention)


def load_causal_lm(name: str, cache_dir: str | None, corpus: Sequence[str], quantize: str, device: torch.device):
    """(causal LM, tokenizer, quantized) for a backbone name (see the module doc)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "tiny-llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        tok = tiny_tokenizer(name, list(corpus) + [" ".join(LETTERS)], _cache_root(cache_dir))
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        return LlamaForCausalLM(cfg), tok, False
    kw: dict[str, Any] = {}
    if name == "smollm2":
        source = str(smollm2_folder(cache_dir))
    elif name.startswith("local:"):
        source = name[len("local:"):]
        if not Path(source).is_dir():
            raise BackboneLoadError(f"{name}: {source} is not a folder; expected a model folder (config.json, the "
                                    "weights and the tokenizer, as `hf download` or save_pretrained writes them)")
    elif name in HUB:
        source = HUB[name].hub_id
        kw["trust_remote_code"] = HUB[name].remote_code  # ChatGLM2 (KAR's generator): its remote code
    else:
        raise BackboneLoadError(f"unknown causal language model {name!r}; expected one of "
                                f"{list(CAUSAL_LMS)} or local:PATH")
    quantized = False
    if quantize != "none" and device.type == "cuda":
        try:
            from transformers import BitsAndBytesConfig

            import bitsandbytes  # noqa: F401

            kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
            quantized = True
        except ImportError:
            if quantize == "4bit":
                raise BackboneLoadError("quantize: 4bit needs the bitsandbytes package on a CUDA machine") from None
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=kw.get("trust_remote_code", False))
        if name in HUB and HUB[name].family == "chatglm2":  # KAR's generator: the adapter's remote-code fixes
            kw.pop("trust_remote_code")
            model = _load_chatglm2(source, dtype, kw)  # its AutoModel is the LM (ChatGLMForConditionalGeneration)
            _patch_chatglm2_tokenizer(tok)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kw)
    except OSError as err:
        raise BackboneLoadError(f"backbone {name!r}: cannot load {source!r} ({err}); offline use smollm2 or "
                                "local:PATH") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, quantized


def letter_ids(tokenizer) -> list[int]:
    """The token id of each candidate letter as the answer's first token; they must be distinct."""
    ids = []
    for letter in LETTERS:
        pieces = tokenizer(letter, add_special_tokens=False)["input_ids"]
        ids.append(int(pieces[0]))
    if len(set(ids)) != len(ids):
        raise ValueError("the tokenizer does not give each letter A-T its own first token")
    return ids


def build_ranker(name: str, cache_dir: str | None, corpus: Sequence[str], quantize: str, device: torch.device,
                 r: int, alpha: float, dropout: float, targets: Sequence[str], precision: str = "auto") -> Ranker:
    from peft import LoraConfig, get_peft_model

    model, tok, quantized = load_causal_lm(name, cache_dir, corpus, quantize, device)
    autocast = cpu_autocast(precision, device)
    if autocast:
        fp32_attention(model)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora).to(device)
    if not quantized:  # the QLoRA path has it from prepare_model_for_kbit_training, as the official code
        # recompute each layer's activations in backward: 12 prompts x ~1,300 tokens through SmolLM2's 30
        # layers kept >20 GB of activations on CPU (OOM-killed); same gradients, ~30% more compute
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.2x; the old name warns
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return Ranker(model, tok, letter_ids(tok), stand_in=name not in HUB, quantized=quantized, autocast=autocast)


def letter_logits(ranker: Ranker, prompts: Sequence[str], max_tokens: int, n_letters: int) -> torch.Tensor:
    """(last-position logits over the vocabulary ``[B, V]``, those of the first ``n_letters`` letters
    ``[B, n_letters]``) for each prompt (left-truncated to ``max_tokens``, left-padded)."""
    tok = ranker.tokenizer
    dev = next(ranker.model.parameters()).device
    ids = [tok(p, add_special_tokens=True)["input_ids"][-max_tokens:] for p in prompts]
    width = max(len(i) for i in ids)
    batch = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for r, i in enumerate(ids):
        batch[r, width - len(i):] = torch.as_tensor(i)
        mask[r, width - len(i):] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    last = last_logits(ranker, batch.to(dev), mask.to(dev), positions.to(dev))
    return last, last[:, torch.as_tensor(ranker.letter_ids[:n_letters], device=dev)]


def last_logits(ranker: Ranker, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Next-token logits at the last position, ``[B, V]`` float32.

    A standard Hugging Face decoder runs its body (under CPU bf16 autocast when on) and then its LM
    head on the last state only, in the head's weight dtype (fp32 on CPU): the full ``[B, L, V]``
    logits of a 49k vocabulary took >20 GB on CPU, and bf16 logits would round the 20 letter scores
    into ties. Other models (remote code) run whole and give their last position.
    """
    lm = ranker.model.get_base_model() if hasattr(ranker.model, "get_base_model") else ranker.model
    body, head = getattr(lm, "model", None), lm.get_output_embeddings()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ranker.autocast):
        if body is not None and head is not None and not getattr(lm.config, "auto_map", None):
            state = body(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state[:, -1]
        else:
            return ranker.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()
    return head(state.to(head.weight.dtype)).float()
