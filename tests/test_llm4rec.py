"""LLM4REC: the closed-form graph bias, its 4-D mask injection, and a tiny run end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laser_repro.llm4rec.graph import BIAS, ITEM, USER, WORD, additive_mask, prompt_bias


def test_closed_form_bias_values_on_a_hand_prompt():
    # user 0, word, item 5, item 7, item 5 again (a repeat = the same node)
    kinds = torch.tensor([[USER, WORD, ITEM, ITEM, ITEM]])
    nodes = torch.tensor([[0, -1, 105, 107, 105]])
    b = prompt_bias(kinds, nodes)[0]
    assert b[0, 2] == b[2, 0] == BIAS["edge"] == 1.0  # user - own item: an edge
    assert b[3, 2] == pytest.approx(4 / 11)  # two items of one user's history: 2 hops
    assert b[4, 2] == pytest.approx(6 / 11) and b[2, 2] == pytest.approx(6 / 11)  # the same node
    assert b[0, 0] == pytest.approx(6 / 11)
    assert bool((b[1] == 0).all()) and bool((b[:, 1] == 0).all())  # word tokens get no bias


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_zero_bias_keeps_logits_and_a_bias_changes_exactly_its_position(impl):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    m = GPT2Model(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100, bos_token_id=0, eos_token_id=0,
                             attn_implementation=impl)).eval()
    ids = torch.randint(0, 100, (2, 6))
    am = torch.ones(2, 6, dtype=torch.long)
    am[1, 4:] = 0
    ref = m(input_ids=ids, attention_mask=am).last_hidden_state
    zero = m(input_ids=ids, attention_mask=additive_mask(am, torch.zeros(2, 6, 6), torch.float32)).last_hidden_state
    torch.testing.assert_close(zero[am.bool()], ref[am.bool()])
    bias = torch.zeros(2, 6, 6)
    bias[0, 3, 1] = 2.0  # query 3 attends more to key 1
    out = m(input_ids=ids, attention_mask=additive_mask(am, bias, torch.float32)).last_hidden_state
    changed = (out - zero).abs().amax(-1) > 1e-6
    assert changed.tolist() == [[False, False, False, True, False, False], [False] * 6]


def test_the_content_lm_labels_shift_within_the_title_and_an_empty_text_adds_none():
    """As the official ContentGPT, a title token is the label of the title position before it (the first is no
    target: decisions); an empty text added one label with no token (the labels then ran one past the ids)."""
    from laser_repro.llm4rec.model import Prompt

    p = Prompt().text([11, 12]).items([5]).text([13]).text([21, 22, 23], predict=True)
    assert p.ids == [11, 12, 5, 13, 21, 22, 23] and p.kinds == [WORD, WORD, ITEM, WORD, WORD, WORD, WORD]
    assert p.labels == [-100, -100, -100, -100, 22, 23, -100]
    empty = Prompt().text([13]).text([], predict=True)
    assert len(empty.labels) == len(empty.ids) == 1 and empty.labels == [-100]


def test_llm4rec_trains_end_to_end_on_a_tiny_gpt2(tmp_path):
    from laser_repro.data.dataset import from_sequences, save_dataset
    from laser_repro.llm4rec.config import LLM4RecRunConfig
    from laser_repro.llm4rec.trainer import train_llm4rec

    words = ("apple banana cherry dolphin eagle falcon guitar hammer igloo jaguar kettle lemon mango napkin "
             "orange piano quartz rabbit saddle tiger umbrella violin walrus yacht").split()
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(60):
        s, n = int(rng.integers(len(words))), int(rng.integers(4, 8))
        seqs.append([(s + j) % len(words) for j in range(n)])
    items = [{"id": w, "title": f"the {w}", "brand": "", "category": ""} for w in words]
    data = save_dataset(from_sequences("ring", "synthetic", items, [f"u{i}" for i in range(60)], seqs), tmp_path / "d")
    base = dict(dataset=str(data), backbone="tiny-gpt2", cache_dir=str(tmp_path / "c"), content_epochs=1,
                content_batch_size=16, collab_epochs=2, finetune_max_epochs=8, patience=8, lr=3e-3, batch_size=16,
                progress=False)
    zero = train_llm4rec(LLM4RecRunConfig(**{**base, "content_epochs": 0, "collab_epochs": 0,
                                             "finetune_max_epochs": 0}), tmp_path / "zero")
    rec = train_llm4rec(LLM4RecRunConfig(**base), tmp_path / "run")
    stages = [h["stage"] for h in rec["history"]]
    assert stages == ["content"] + ["collaborative"] * 2 + ["finetune"] * 8
    assert rec["test"]["ndcg@10"] > 1.3 * zero["test"]["ndcg@10"] and rec["stand_in_backbone"]


def test_a_backbone_loaded_in_bf16_trains_in_fp32_under_autocast(tmp_path, monkeypatch):
    """On CUDA load_backbone puts the backbone in bf16: LLM4REC's fp32 user/item embeddings then met bf16 layers
    ("mixed dtype") and Adam would step bf16 weights. Forced here on CPU through the same dtype switch."""
    from laser_repro.data.dataset import from_sequences, save_dataset
    from laser_repro.laser import backbones
    from laser_repro.llm4rec.config import LLM4RecRunConfig
    from laser_repro.llm4rec.trainer import train_llm4rec

    monkeypatch.setattr(backbones, "default_dtype", lambda device: torch.bfloat16)
    items = [{"id": w, "title": f"the {w}", "brand": "", "category": ""} for w in "ant bee cat dog eel fox".split()]
    data = save_dataset(from_sequences("r", "synthetic", items, [f"u{i}" for i in range(12)],
                                       [[(i + j) % 6 for j in range(5)] for i in range(12)]), tmp_path / "d")
    rec = train_llm4rec(LLM4RecRunConfig(dataset=str(data), backbone="tiny-gpt2", cache_dir=str(tmp_path / "c"),
                                         content_epochs=1, collab_epochs=1, finetune_max_epochs=1, precision="fp32",
                                         batch_size=8, progress=False), tmp_path / "run")
    assert rec["cpu_bf16_autocast"] is True and np.isfinite(rec["test"]["ndcg@10"])
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=False)["state_dict"]
    assert {v.dtype for v in state.values() if torch.is_floating_point(v)} == {torch.float32}


def test_each_pretraining_stage_steps_its_own_adam_and_batch_size(tmp_path, monkeypatch, kill_on_call):
    """The official code builds review_optimizer and collaborative_optimizer (batch 4 and 32): the collaborative
    stage starts with fresh moments, and a checkpoint of the earlier shared optimiser is refused by file."""
    from laser_repro.data.dataset import from_sequences, save_dataset
    from laser_repro.llm4rec import trainer
    from laser_repro.llm4rec.config import LLM4RecRunConfig

    items = [{"id": w, "title": f"the {w}", "brand": "", "category": ""} for w in "ant bee cat dog eel fox".split()]
    data = save_dataset(from_sequences("r", "synthetic", items, [f"u{i}" for i in range(12)],
                                       [[(i + j) % 6 for j in range(5)] for i in range(12)]), tmp_path / "d")
    cfg = LLM4RecRunConfig(dataset=str(data), backbone="tiny-gpt2", cache_dir=str(tmp_path / "c"), collab_epochs=2,
                           finetune_max_epochs=1, progress=False)
    assert (cfg.content_epochs, cfg.content_batch_size, cfg.batch_size) == (3, 4, 32)  # official settings
    real, seen = trainer._epoch, []

    def spy(model, opt, rows, make, loss_fn, batch_size, progress, tag, seed):
        seen.append((tag, id(opt), batch_size, sum(len(v) for v in opt.state.values())))
        return real(model, opt, rows, make, loss_fn, batch_size, progress, tag, seed)

    monkeypatch.setattr(trainer, "_epoch", spy)
    trainer.train_llm4rec(cfg, tmp_path / "run")
    assert [t for t, *_ in seen] == ["content 1", "content 2", "content 3", "collaborative 1", "collaborative 2"]
    assert [b for *_, b, _ in seen] == [4, 4, 4, 32, 32]
    assert len({o for _, o, *_ in seen[:3]}) == 1 and seen[3][1] != seen[0][1] and seen[4][1] == seen[3][1]
    assert seen[3][3] == 0 and seen[1][3] > 0  # the collaborative Adam starts without moments

    kill_on_call(trainer, "_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_llm4rec(cfg, tmp_path / "killed")
    path = tmp_path / "killed" / "checkpoint.pt"
    blob = torch.load(path, weights_only=False)
    # written under other numerics (precision: auto on a CPU with bf16 units, resumed on one without, or back):
    # refused, by file
    now = blob["numerics"]["cpu_bf16_autocast"]
    assert set(blob["numerics"]) == {"cpu_bf16_autocast", "bf16_backbone"}
    torch.save({**blob, "numerics": {**blob["numerics"], "cpu_bf16_autocast": not now}}, path)
    with pytest.raises(ValueError, match=rf"checkpoint\.pt: written under .*'cpu_bf16_autocast': {not now}.*this "
                                         rf"session would run .*'cpu_bf16_autocast': {now}"):
        trainer.train_llm4rec(cfg, tmp_path / "killed")
    blob["pre_opt"] = blob.pop("content_opt")
    del blob["collab_opt"]
    torch.save(blob, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: written when both pre-training stages shared one"):
        trainer.train_llm4rec(cfg, tmp_path / "killed")
