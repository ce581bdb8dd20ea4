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
