"""LlamaRec: the composite score on the shared evaluator, LoRA adapters, a tiny end-to-end run."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from laser_repro.eval.evaluator import evaluate
from laser_repro.llamarec.scoring import LETTERS, build_prompt, composite_scores, llamarec_overall


def test_composite_score_reproduces_llamarec_metrics_on_a_hand_example():
    """3 users, 40 items, top 20. User 0: target retrieved, the LLM puts it first; user 1: retrieved,
    the LLM puts it third; user 2: not retrieved (the LLM never runs)."""
    n, k = 40, 20
    retriever = -torch.arange(n, dtype=torch.float32).repeat(3, 1)  # item i scores -i: top 20 = items 0..19
    targets = np.array([7, 12, 30])
    top = torch.arange(k).repeat(3, 1)
    retrieved = torch.tensor([True, True, False])
    logits = torch.zeros(3, k)
    logits[0, 7] = 5.0  # user 0: target first
    logits[1, [3, 4, 12]] = torch.tensor([9.0, 8.0, 7.0])  # user 1: target third
    scores = composite_scores(retriever, top, logits, retrieved)
    assert bool((scores[:2, :k].min(dim=1).values > retriever[:2].max(dim=1).values).all())  # above every retriever score
    torch.testing.assert_close(scores[2], retriever[2])  # not retrieved: the retriever's scores
    res = evaluate(lambda pos: scores[torch.as_tensor(pos)], np.arange(3), targets)
    assert res.ranks.tolist() == [0, 2, 30]
    # LlamaRec's own formula: (subset metric) x (retrieved share); non-retrieved users score 0
    own = llamarec_overall(np.array([8, 13, 31]), np.array([1, 3, 5]), k)
    assert own["recall@10"] == pytest.approx(2 / 3) and own["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert res.metrics["recall@10"] == pytest.approx(own["recall@10"])
    assert res.metrics["ndcg@10"] == pytest.approx(own["ndcg@10"])
    assert res.metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 31) / 3)  # untruncated MRR (the suite's)


def test_prompt_letters_candidates_in_order():
    p = build_prompt(["kettle", "pan"], ["cup", "fork", "spoon"])
    assert "User history: (1) kettle \n (2) pan; \n Candidate pool: (A) cup \n (B) fork \n (C) spoon" in p
    assert p.endswith("### Response:\n") and LETTERS[19] == "T"
    with pytest.raises(ValueError, match="at most 20"):
        build_prompt([], ["x"] * 21)


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    from laser_repro.data.dataset import from_sequences, save_dataset

    words = ("apple banana cherry dolphin eagle falcon guitar hammer igloo jaguar kettle lemon mango napkin "
             "orange piano quartz rabbit saddle tiger umbrella violin walrus yacht zebra").split()
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(80):
        s, n = int(rng.integers(len(words))), int(rng.integers(4, 8))
        seqs.append([(s + j) % len(words) for j in range(n)])
    items = [{"id": w, "title": f"the {w}", "brand": "", "category": ""} for w in words]
    return save_dataset(from_sequences("ring", "synthetic", items, [f"u{i}" for i in range(80)], seqs),
                        tmp_path_factory.mktemp("lr") / "ring")


def test_training_rows_on_a_history_over_nearly_every_item_end(tmp_path):
    """Negatives were drawn outside the history until enough were found: a history over nearly every item (tiny data
    sets) never ended. Such a row now draws them from every item but the target."""
    from laser_repro.data.dataset import from_sequences, load_dataset, save_dataset
    from laser_repro.llamarec.config import LlamaRecRunConfig
    from laser_repro.llamarec.trainer import training_rows

    items = [{"id": f"i{i}", "title": f"item {i}", "brand": "", "category": ""} for i in range(6)]
    ds = load_dataset(save_dataset(from_sequences("six", "synthetic", items, ["u0", "u1"],
                                                  [[0, 1, 2, 3, 4, 5, 0, 1], [2, 3, 4]]), tmp_path / "six"))
    cfg = LlamaRecRunConfig(dataset=str(tmp_path / "six"), n_candidates=4, mask_history=True)
    rows = training_rows(ds, np.array([0, 1]), cfg, np.random.default_rng(0))
    assert len(rows) == 5 + 0  # user 0: 6 training items, 5 prefixes; user 1: one training item, none
    for hist, cands, answer in rows:
        assert len(cands) == len(set(cands)) == 4 and cands[answer] not in cands[:answer] + cands[answer + 1:]
    target_of = {len(h): c[a] for h, c, a in rows}
    assert target_of == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
    # early prefixes still draw outside the history: the first row's negatives avoid items 0 and 1
    first = next(c for h, c, a in rows if len(h) == 1)
    assert 0 not in first


def test_training_negatives_follow_the_retrievers_history_masking(tmp_path):
    """Unmasked (the suite's protocol) the test's candidates hold history items, so the training negatives may be
    history items too: drawn outside the history, a history item among the candidates was always the answer."""
    from laser_repro.data.dataset import from_sequences, load_dataset, save_dataset
    from laser_repro.llamarec.config import LlamaRecRunConfig
    from laser_repro.llamarec.trainer import training_rows

    items = [{"id": f"i{i}", "title": f"item {i}", "brand": "", "category": ""} for i in range(30)]
    seqs = [list(range(u, u + 12)) for u in range(10)]
    ds = load_dataset(save_dataset(from_sequences("s", "synthetic", items, [f"u{u}" for u in range(10)], seqs),
                                   tmp_path / "s"))

    def history_negatives(mask: bool) -> int:
        cfg = LlamaRecRunConfig(dataset=str(tmp_path / "s"), n_candidates=8, mask_history=mask)
        rows = training_rows(ds, np.arange(10), cfg, np.random.default_rng(0))
        return sum(c in set(h.tolist()) for h, cands, a in rows for i, c in enumerate(cands) if i != a)

    assert history_negatives(True) == 0
    assert history_negatives(False) > 50  # ~7 negatives x 90 rows x (about a fifth of the items in the history)
    cfg = LlamaRecRunConfig(dataset=str(tmp_path / "s"), n_candidates=8, negatives="outside_history")
    rows = training_rows(ds, np.arange(10), cfg, np.random.default_rng(0))  # LlamaRec's code, on request
    assert not any(c in set(h.tolist()) for h, cands, a in rows for i, c in enumerate(cands) if i != a)


def test_saved_adapters_that_do_not_fit_are_refused_not_skipped(ring, tmp_path):
    """Resume and the best step's adapters loaded with strict=False: adapter keys under other names (another peft)
    loaded nothing, silently, and training went on from fresh adapters."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.llamarec.ranker import build_ranker
    from laser_repro.llamarec.trainer import load_adapters

    ds = load_dataset(ring)
    ranker = build_ranker("tiny-llama", str(tmp_path), [it["title"] for it in ds.items], "auto",
                          torch.device("cpu"), 8, 32, 0.0, ["q_proj", "v_proj"])
    saved = {k: v.clone() + 1.0 for k, v in ranker.model.state_dict().items() if "lora_" in k}
    load_adapters(ranker.model, saved, tmp_path / "checkpoint.pt")
    name = next(iter(saved))
    assert torch.equal(ranker.model.state_dict()[name], saved[name])  # they did load
    renamed = {k.replace("lora_A", "lora_a"): v for k, v in saved.items()}
    with pytest.raises(ValueError, match=r"checkpoint\.pt: its adapters do not fit this ranker \(missing \["):
        load_adapters(ranker.model, renamed, tmp_path / "checkpoint.pt")


def test_lora_trains_only_the_adapters(ring, tmp_path):
    from laser_repro.data.dataset import load_dataset
    from laser_repro.llamarec.ranker import build_ranker, letter_logits

    torch.manual_seed(0)
    ds = load_dataset(ring)
    with warnings.catch_warnings():
        # our call, not the old name (peft's own is_gradient_checkpointing warning is peft's to fix)
        warnings.filterwarnings("error", ".*gradient_checkpointing_enable", FutureWarning)
        ranker = build_ranker("tiny-llama", str(tmp_path), [it["title"] for it in ds.items], "auto",
                              torch.device("cpu"), 8, 32, 0.0, ["q_proj", "v_proj"])
    trainable = {n for n, p in ranker.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = ranker.model.get_base_model()  # activations recomputed, as in QLoRA (the property's old name before 5.2x)
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    assert any("q_proj" in n for n in trainable) and any("v_proj" in n for n in trainable)
    assert not any("k_proj" in n or "mlp" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in ranker.model.named_parameters()}
    opt = torch.optim.AdamW([p for p in ranker.model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # lora_B starts at zero: the second step moves lora_A too
        full, _ = letter_logits(ranker, [build_prompt(["the apple"], ["the banana", "the tiger"])], 512, 2)
        torch.nn.functional.cross_entropy(full, torch.tensor([ranker.letter_ids[1]])).backward()
        opt.step()
        opt.zero_grad()
    for n, p in ranker.model.named_parameters():
        assert torch.equal(p, before[n]) != (n in trainable), n


def test_letter_logits_are_the_full_forwards_last_position_in_fp32(ring, tmp_path):
    """The ranker's logits (body, then the head on the last state only) equal the whole model's
    last-position logits; under bf16 autocast they stay fp32 (bf16 logits would tie letters)."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.llamarec.ranker import build_ranker, letter_logits

    ds = load_dataset(ring)
    prompts = [build_prompt(["the apple", "a pear"], ["the banana", "the tiger", "a plum"]),
               build_prompt(["the tiger"], ["the apple", "a pear", "the banana"])]  # other lengths: left padding
    kw = dict(corpus=[it["title"] for it in ds.items], quantize="auto", device=torch.device("cpu"), r=8, alpha=32,
              dropout=0.0, targets=["q_proj", "v_proj"])
    torch.manual_seed(0)
    ranker = build_ranker("tiny-llama", str(tmp_path), precision="fp32", **kw)
    ranker.model.eval()
    full, letters = letter_logits(ranker, prompts, 512, 3)
    tok = ranker.tokenizer
    for row, prompt in enumerate(prompts):  # each prompt alone, unpadded, through the whole peft model
        ids = torch.as_tensor([tok(prompt, add_special_tokens=True)["input_ids"]])
        with torch.no_grad():
            alone = ranker.model(input_ids=ids).logits[0, -1]
        torch.testing.assert_close(full[row].detach(), alone, atol=1e-4, rtol=1e-4)
    assert letters.shape == (2, 3) and torch.equal(letters, full[:, ranker.letter_ids[:3]])

    torch.manual_seed(0)
    bf16 = build_ranker("tiny-llama", str(tmp_path), precision="bf16", **kw)
    assert bf16.autocast
    _, mixed = letter_logits(bf16, prompts, 512, 3)
    assert mixed.dtype == torch.float32
    assert not torch.equal(mixed, mixed.bfloat16().float())  # not rounded to bf16
    torch.testing.assert_close(mixed, letters, atol=0.1, rtol=0.05)  # bf16 body, same model


def test_llamarec_end_to_end_on_a_tiny_model(ring, tmp_path):
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec
    from laser_repro.llamarec.config import LlamaRecRunConfig
    from laser_repro.llamarec.trainer import train_llamarec

    retr = train_idrec(IDRecRunConfig(dataset=str(ring), model="lrurec", model_config={"hidden": 16, "max_len": 8},
                                      max_epochs=15, lr=0.01, batch_size=32, progress=False), tmp_path / "lrurec")
    assert retr["test"]["recall@10"] > 0.5  # the ring is learnable
    cfg = LlamaRecRunConfig(dataset=str(ring), retriever_run=str(tmp_path / "lrurec"), backbone="tiny-llama",
                            cache_dir=str(tmp_path / "cache"), n_candidates=5, max_train_users=10, lr=1e-3,
                            warmup_steps=1, batch_size=8, progress=False, max_eval_users=30)
    rec = train_llamarec(cfg, tmp_path / "llamarec")
    extra = rec["test_extra"]
    assert rec["train_rows"] > 10 and rec["test"]["n"] == 30 and 0 < extra["llm_users"] <= 30
    assert extra["llm_users"] == round(extra["retrieved_share"] * 30)
    # on the shared evaluator, Recall@10 and NDCG@10 equal LlamaRec's own overall metrics... (k = 5 < 10:
    # every retrieved target is in the top 10, so Recall@10 = the retrieved share)
    assert rec["test"]["recall@10"] == pytest.approx(extra["llamarec_overall"]["recall@10"])
    assert rec["test"]["ndcg@10"] == pytest.approx(extra["llamarec_overall"]["ndcg@10"])
    assert rec["test"]["recall@10"] == pytest.approx(extra["retrieved_share"])
    assert rec["stand_in_backbone"] and not rec["quantized"]


def test_the_schedule_is_the_hf_trainers_linear_warmup_then_decay():
    from laser_repro.llamarec.trainer import linear_warmup_decay

    f = linear_warmup_decay(2, 6)  # (it held the peak lr after the warm-up; the official Trainer decays to 0)
    assert [f(s) for s in range(7)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_the_rankers_adamw_has_the_hf_trainers_zero_weight_decay():
    """The official TrainingArguments set no weight_decay (the Trainer's 0.0); torch's AdamW default (0.01) shrank every
    adapter weight by lr x 0.01 a step, even where its gradient is 0."""
    import torch

    from laser_repro.llamarec.trainer import ranker_optimizer

    w = torch.nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
    opt = ranker_optimizer([w], lr=0.5)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.equal(w.detach(), torch.full((3,), 2.0, dtype=torch.float64))  # 0.01 decay: 1.99


def test_llamarec_validates_every_eval_steps_and_keeps_the_best_adapters(ring, tmp_path, monkeypatch, kill_on_call):
    """Validation every eval_steps optimiser steps (and at the last), early stopping after `patience` worse
    validations, the best step's adapters kept (it validated once per epoch, so with the official single epoch
    'best validation NDCG@10' selected nothing); a run killed mid-epoch resumes to the same record."""
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec
    from laser_repro.llamarec import trainer
    from laser_repro.llamarec.config import LlamaRecRunConfig

    train_idrec(IDRecRunConfig(dataset=str(ring), model="lrurec", model_config={"hidden": 16, "max_len": 8},
                               max_epochs=3, lr=0.01, batch_size=32, progress=False), tmp_path / "lrurec")
    cfg = LlamaRecRunConfig(dataset=str(ring), retriever_run=str(tmp_path / "lrurec"), backbone="tiny-llama",
                            cache_dir=str(tmp_path / "cache"), n_candidates=5, max_train_users=10, max_train_rows=40,
                            lr=1e-3, warmup_steps=1, batch_size=4, eval_steps=3, patience=2, epochs=2,
                            progress=False, max_eval_users=10, max_valid_users=10)
    reference = trainer.train_llamarec(cfg, tmp_path / "reference")  # 10 steps an epoch, 20 in all
    steps = [h["step"] for h in reference["history"]]
    assert steps[:3] == [3, 6, 9] and all(b - a == 3 for a, b in zip(steps, steps[1:]))
    valid = [h["valid"]["ndcg@10"] for h in reference["history"]]
    best = max(range(len(valid)), key=lambda i: (valid[i], -i))  # the first of the best
    assert reference["best_step"] == steps[best] and reference["steps_run"] == steps[-1]
    assert steps[-1] == 20 or len(steps) - 1 - best == 2  # ran out, or stopped 2 validations after the best
    # killed during its second validation (step 6, mid-epoch), resumed from the step-3 checkpoint
    real = kill_on_call(trainer, "evaluate_split", 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_llamarec(cfg, tmp_path / "killed")
    monkeypatch.setattr(trainer, "evaluate_split", real)
    # a checkpoint written under torch's weight decay 0.01 (before 2026-12-07) is refused, not resumed with it
    import shutil

    import torch

    shutil.copytree(tmp_path / "killed", tmp_path / "decayed")
    blob = torch.load(tmp_path / "decayed" / "checkpoint.pt", weights_only=False)
    for group in blob["optimizer"]["param_groups"]:
        group["weight_decay"] = 0.01
    torch.save(blob, tmp_path / "decayed" / "checkpoint.pt")
    with pytest.raises(ValueError, match="written with AdamW's weight decay 0.01"):
        trainer.train_llamarec(cfg, tmp_path / "decayed")
    # nor one trained on a 4-bit base (quantize: auto on a CUDA node) resumed on an unquantised one
    blob = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert blob["numerics"]["quantized"] is False
    torch.save({**blob, "numerics": {**blob["numerics"], "quantized": True}}, tmp_path / "decayed" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint\.pt: written under \{'quantized': True.*this session would run "
                                         r"\{'quantized': False"):
        trainer.train_llamarec(cfg, tmp_path / "decayed")
    resumed = trainer.train_llamarec(cfg, tmp_path / "killed")
    for key in ("history", "best_step", "steps_run", "valid", "test"):
        assert resumed[key] == reference[key], key
    # between validations a checkpoint every CHECKPOINT_EVERY_S (it saved only at validations: a 7B run killed
    # lost up to 100 steps): killed in step 5, it resumes after step 4, to the same record
    monkeypatch.setattr(trainer, "CHECKPOINT_EVERY_S", 0.0)
    real_check = kill_on_call(trainer, "check_loss", 5)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_llamarec(cfg, tmp_path / "between")
    monkeypatch.setattr(trainer, "check_loss", real_check)
    assert torch.load(tmp_path / "between" / "checkpoint.pt", weights_only=False)["state"]["step"] == 4
    resumed = trainer.train_llamarec(cfg, tmp_path / "between")
    for key in ("history", "best_step", "steps_run", "valid", "test"):
        assert resumed[key] == reference[key], key
    # scripted validation scores: best at the 2nd validation, two worse ones, then it stops (step 12 of 20)
    scores = iter([0.3, 0.5, 0.4, 0.45])

    def scripted(ranker, retriever, ds, users, split, names, c):
        res, extra = real(ranker, retriever, ds, users, split, names, c)
        value = next(scores, None) if split == "valid" else None  # (the final evaluation: its own numbers)
        if value is not None:
            res.metrics["ndcg@10"] = value
        return res, extra

    monkeypatch.setattr(trainer, "evaluate_split", scripted)
    rec = trainer.train_llamarec(cfg, tmp_path / "scripted")
    assert [h["step"] for h in rec["history"]] == [3, 6, 9, 12]
    assert (rec["best_step"], rec["best_epoch"], rec["steps_run"]) == (6, 1, 12)
