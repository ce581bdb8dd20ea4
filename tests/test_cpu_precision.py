"""CPU precision rules of the trainer scaffolding: when bf16 autocast is on, and fp32 attention under it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from laser_repro.train import scaffold


def test_cpu_autocast_follows_the_precision_key(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(scaffold, "cpu_has_bf16", lambda: False)
    assert not scaffold.cpu_autocast("auto", cpu)
    assert scaffold.cpu_autocast("bf16", cpu)
    monkeypatch.setattr(scaffold, "cpu_has_bf16", lambda: True)
    assert scaffold.cpu_autocast("auto", cpu)
    assert not scaffold.cpu_autocast("fp32", cpu)
    assert not scaffold.cpu_autocast("bf16", cuda)  # CUDA runs bf16 weights, never CPU autocast


def tiny_llama():
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaModel(cfg).eval()


def states(model, ids, mask, autocast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return model(input_ids=ids, attention_mask=mask).last_hidden_state.float()


def test_fp32_attention_switches_and_keeps_the_outputs():
    model = tiny_llama()
    ids = torch.randint(1, 50, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, :5] = 0  # left padding: the mask must still reach the swapped attention
    reference = states(model, ids, mask, autocast=False)  # all fp32
    bf16_sdpa = states(model, ids, mask, autocast=True)
    assert model.config._attn_implementation == "sdpa"
    assert scaffold.fp32_attention(model)
    assert model.config._attn_implementation == scaffold.FP32_ATTENTION
    swapped = states(model, ids, mask, autocast=True)
    real = mask.bool()
    err_swapped = (swapped - reference)[real].abs().max()
    err_bf16 = (bf16_sdpa - reference)[real].abs().max()
    assert err_swapped < 0.1 * reference[real].abs().max()  # bf16 matmuls elsewhere, so not exact
    assert not torch.equal(swapped, bf16_sdpa)  # the attention really changed precision
    # without autocast the swapped model computes exactly what SDPA computed in fp32
    assert torch.allclose(states(model, ids, mask, autocast=False), reference, atol=1e-5)
    assert err_swapped <= err_bf16 * 1.5  # no worse than bf16 attention (usually better)


def test_fp32_attention_is_bf16_without_grad():
    """Item refresh and evaluation (no grad) take bf16 SDPA, faster on CPU; training steps take fp32."""
    model = tiny_llama()
    ids = torch.randint(1, 50, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, :4] = 0
    with torch.no_grad():
        bf16_sdpa = states(model, ids, mask, autocast=True)
        assert scaffold.fp32_attention(model)
        no_grad = states(model, ids, mask, autocast=True)
    with_grad = states(model, ids, mask, autocast=True).detach()
    assert torch.equal(no_grad, bf16_sdpa)
    assert not torch.equal(with_grad, bf16_sdpa)


def test_fp32_attention_leaves_other_models_alone():
    assert not scaffold.fp32_attention(nn.Linear(2, 2))  # no Hugging Face attention
    model = tiny_llama()
    model.set_attn_implementation("eager")
    assert not scaffold.fp32_attention(model)  # only SDPA models are switched
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_backbones_get_fp32_attention_under_autocast(name, tmp_path):
    from laser_repro.laser.backbones import load_backbone

    corpus = ["a red pen", "blue ink for a pen", "paper"] * 10
    on = load_backbone(name, "cpu", corpus, cache_dir=tmp_path, precision="bf16")
    off = load_backbone(name, "cpu", corpus, cache_dir=tmp_path, precision="fp32")
    assert on.model.config._attn_implementation == scaffold.FP32_ATTENTION
    assert on.describe()["attention"] == "bf16 autocast; SDPA in fp32 with grad, bf16 without"
    assert off.model.config._attn_implementation == "sdpa" and "attention" not in off.describe()
