"""Two-phase training: rows, refresh schedule, selection, checkpoint/resume, switches, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from laser_repro.data.dataset import from_sequences
from laser_repro.eval.evaluator import load_ranks
from laser_repro.laser import trainer
from laser_repro.laser.config import LaserRunConfig, LossConfig, MFormerConfig, OptimConfig, PhaseConfig
from laser_repro.laser.tiny import TINY_MFORMER, tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("laser-data"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("laser-cache")


@pytest.fixture(scope="module")
def main_run(data, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "main"
    # dropout on, so exact resume really depends on the restored RNG states
    cfg = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=3, phase2_epochs=2),
                      mformer=MFormerConfig(**{**TINY_MFORMER, "dropout": 0.1}))
    return cfg, out, trainer.train_laser(cfg, out)


def test_training_rows_are_every_prefix_with_next_item():
    items = [{"id": str(i), "title": f"t{i}", "brand": "b", "category": "c"} for i in range(9)]
    ds = from_sequences("toy", "test", items, ["u0", "u1"], [[0, 1, 2, 3, 4, 5], [6, 7, 8]])
    # training parts: [0, 1, 2, 3] and [6] (leave-one-out)
    hist, tgt = trainer.training_rows(ds, np.array([0, 1]), min_history=2)
    assert [h.tolist() for h in hist] == [[0, 1], [0, 1, 2]] and tgt.tolist() == [2, 3]
    hist1, tgt1 = trainer.training_rows(ds, np.array([0, 1]), min_history=1)
    assert [h.tolist() for h in hist1] == [[0], [0, 1], [0, 1, 2]] and tgt1.tolist() == [1, 2, 3]
    cfg = LaserRunConfig(max_train_users=1, seed=3)
    assert trainer.training_users(ds, cfg).tolist() == [0]  # user 1 has no row; cap keeps one user


def test_no_grad_batch_sizes_default_by_device(data, cache, monkeypatch):
    """eval_batch_size / item_batch_size 0 (the default): 16 users / 32 items per forward on CPU (the fastest
    measured, benchmarks/laser_batches.md), 64 / 128 on a GPU; a size in the run config is used as given."""
    from laser_repro.config import ConfigError, from_dict
    from laser_repro.laser.config import no_grad_batch

    cfg = LaserRunConfig(dataset=str(data))
    assert (cfg.eval_batch_size, cfg.item_batch_size) == (0, 0)
    assert [no_grad_batch(0, k, "cpu") for k in ("eval", "item")] == [16, 32]
    assert [no_grad_batch(0, k, "cuda") for k in ("eval", "item")] == [64, 128]
    assert no_grad_batch(7, "eval", "cpu") == 7 and no_grad_batch(7, "item", "cuda") == 7
    with pytest.raises(ConfigError, match="eval_batch_size"):
        from_dict(LaserRunConfig, {"dataset": str(data), "eval_batch_size": -1})
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(data)
    model = trainer.build_model(tiny_config(data, cache, item_batch_size=0, eval_batch_size=0), ds, torch.device("cpu"))
    from laser_repro.laser import model as model_module

    seen = []  # the batch size each no-grad pass resolved (the model resolves 0 on its own device)

    def resolved(size, kind, device_type):
        seen.append((kind, no_grad_batch(size, kind, device_type)))
        return seen[-1][1]

    monkeypatch.setattr(model_module, "no_grad_batch", resolved)
    state = trainer.TrainState()
    table = trainer.refresh_items(model, ds.n_items, model.cfg, state, "test")
    trainer.evaluate_split(model, ds, ds.eval_users("valid")[:3], "valid", table, model.cfg)
    assert seen == [("item", 32), ("eval", 16)]


def test_two_phase_run_writes_the_run_folder(main_run):
    cfg, out, record = main_run
    for f in ("metrics.json", "ranks.npz", "train.log", "checkpoint.pt", "model.pt"):
        assert (out / f).exists(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "laser" and metrics["stand_in_backbone"] and metrics["backbone"]["name"] == "tiny-gpt2"
    assert metrics["config"]["backbone"] == "tiny-gpt2" and metrics["ties"] == "pessimistic"
    ranks = load_ranks(out / "ranks.npz")
    assert set(ranks) == {"valid", "test"}
    assert ranks["test"].metrics["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])
    # selection on validation only: the phase-1 best and every phase-2 epoch compete (first best wins)
    p1 = [h for h in metrics["history"] if h["phase"] == 1]
    p2 = [h for h in metrics["history"] if h["phase"] == 2]
    best1 = max(h["valid"]["ndcg@10"] for h in p1)
    candidates = [(best1, 1, metrics["phase1_best_epoch"])] + [(h["valid"]["ndcg@10"], 2, h["epoch"]) for h in p2]
    top = max(c[0] for c in candidates)
    winner = next(c for c in candidates if c[0] == top)
    assert (metrics["best_phase"], metrics["best_epoch"]) == winner[1:]
    assert metrics["valid"]["ndcg@10"] == pytest.approx(top)


def test_one_refresh_per_phase1_epoch_none_in_phase2(main_run):
    _, out, record = main_run
    p1 = [h for h in record["history"] if h["phase"] == 1]
    assert record["item_refreshes"] == len(p1) >= 1
    log = (out / "train.log").read_text().splitlines()
    events = [("refresh" if "item refresh" in l else "p1" if "phase 1 epoch" in l else "p2")
              for l in log if "item refresh" in l or "phase 1 epoch" in l or "phase 2 epoch" in l]
    assert events == ["refresh", "p1"] * len(p1) + ["p2"] * 2


def test_training_lowers_the_loss_and_beats_the_untrained_model(main_run):
    _, _, record = main_run
    losses = [h["loss_iic"] for h in record["history"]]
    assert losses[-1] < losses[0] - 0.05
    assert record["valid"]["ndcg@10"] > record["untrained_valid"]["ndcg@10"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [2, 4])  # during phase 1's second epoch / phase 2's first epoch
def test_resume_after_a_kill_gives_identical_metrics(main_run, data, cache, tmp_path, monkeypatch, kill_on_call,
                                                      kill_at):
    cfg, _, reference = main_run
    out = tmp_path / "killed"
    real = kill_on_call(trainer, "run_epoch", kill_at)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_laser(cfg, out)
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(trainer, "run_epoch", real)
    resumed = trainer.train_laser(cfg, out)
    assert "resumed from" in (out / "train.log").read_text()
    for key in ("valid", "test", "history", "best_epoch", "item_refreshes", "untrained_valid"):
        assert resumed[key] == reference[key], key
    again = trainer.train_laser(dataclasses.replace(cfg, progress=True, eval_batch_size=7), out)  # execution keys
    assert again["test"] == reference["test"]  # finished: nothing is redone
    with pytest.raises(ValueError, match=r"results of a different run config \(seed 0, it had seed: 0 \(now 1\)\)"):
        trainer.train_laser(dataclasses.replace(cfg, seed=1), out)


def test_switch_no_phase1_no_phase2_and_zero_shot(data, cache, tmp_path):
    no1 = trainer.train_laser(tiny_config(data, cache, phases=PhaseConfig(phase1=False, phase2_epochs=1)), tmp_path / "a")
    assert no1["item_refreshes"] == 1 and [h["phase"] for h in no1["history"]] == [2] and no1["best_phase"] == 2
    no2 = trainer.train_laser(tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=2, phase2=False)), tmp_path / "b")
    assert no2["item_refreshes"] == 2 and [h["phase"] for h in no2["history"]] == [1, 1] and no2["best_phase"] == 1
    zero = trainer.train_laser(tiny_config(data, cache, phases=PhaseConfig(phase1=False, phase2=False),
                                           init_from=str(tmp_path / "b")), tmp_path / "c")
    assert zero["item_refreshes"] == 1 and zero["history"] == [] and zero["best_epoch"] == -1
    a = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["trainable"]
    c = torch.load(tmp_path / "c" / "model.pt", weights_only=True)["trainable"]
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)  # init_from loaded b's weights
    assert zero["valid"]["ndcg@10"] == pytest.approx(zero["untrained_valid"]["ndcg@10"])


def test_optimiser_alternatives():
    cfg = tiny_config(optim=OptimConfig(optimizer="adamw", weight_decay=0.05, scheduler="cosine", warmup_steps=2, lr=1.0))
    model = torch.nn.Linear(2, 2)  # make_optimizer only needs .parameters()
    opt, sched = trainer.make_optimizer(cfg, model, steps=6)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.05
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466], abs=1e-6)  # warmup, then cosine
    plain, none = trainer.make_optimizer(tiny_config(), model, steps=6)
    assert type(plain) is torch.optim.Adam and none is None


def test_grad_accumulation_matches_a_bigger_batch(data, cache):
    """Two accumulated batches of 2 rows take the same Adam step as one batch of 4 (no dropout).

    L_LB pools its positions over a batch, so it is not additive over sub-batches: lambda = 0 here.
    """
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(data)
    rows = trainer.training_rows(ds, trainer.training_users(ds, tiny_config(data)), 2)
    rows = (rows[0][:4], rows[1][:4])
    states = []
    for batch, accum in ((4, 1), (2, 2), (2, 1)):
        cfg = tiny_config(data, cache, optim=OptimConfig(batch_size=batch, grad_accumulation=accum, lr=1e-2),
                          loss=LossConfig(lb_weight=0.0), backbone_precision="fp32")  # exact sums need fp32
        torch.manual_seed(0)
        model = trainer.build_model(cfg, ds, torch.device("cpu"))
        table = model.embed_items(ds.n_items, 64)
        opt, sched = trainer.make_optimizer(cfg, model, 1)
        trainer.run_epoch(model, rows, table, opt, sched, dataclasses.replace(cfg, seed=0), 1, 0)
        states.append(model.trainable_state())
    def gap(a: dict, b: dict) -> float:
        return max((a[k] - b[k]).abs().max().item() for k in a)

    # Adam's first step moves each weight by about lr = 1e-2: float noise stays far below that,
    # while two separate steps of 2 rows (no accumulation) land elsewhere
    assert gap(states[0], states[1]) < 1e-4
    assert gap(states[0], states[2]) > 5e-3


def test_cli_help_and_config_errors(data, cache, tmp_path, capsys, caplog):
    from laser_repro.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train-laser", "--help"])
    assert exc.value.code == 0 and "two-phase" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": str(data), "mformer": {"experts": 3}}))
    assert main(["train-laser", "--config", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "bad.yaml: mformer: unknown key(s) ['experts']" in caplog.text
    # a folder given as the config: a one-line error (it was an IsADirectoryError traceback), exit code 1
    assert main(["train-laser", "--config", str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    assert f"Is a directory: '{tmp_path}'" in caplog.text


def test_zero_training_users_is_zero_shot(data, cache, tmp_path):
    """Figure 3's 0% cell: no training rows -> one refresh, evaluation of the (init_from) model."""
    rec = trainer.train_laser(tiny_config(data, cache, train_user_fraction=0.0), tmp_path / "zero")
    assert rec["train_rows"] == 0 and rec["history"] == [] and rec["item_refreshes"] == 1 and rec["best_phase"] == 0
    assert rec["valid"]["ndcg@10"] == pytest.approx(rec["untrained_valid"]["ndcg@10"])


def test_m_former_is_fed_by_a_trained_id_model_run(data, cache, tmp_path):
    """idrec_run: the frozen encoder comes from a train-idrec folder (Figure 5: any ID model)."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec

    ds = load_dataset(data)
    run = tmp_path / "sasrec"
    train_idrec(IDRecRunConfig(dataset=str(data), model="sasrec", max_epochs=2, progress=False), run)
    model = trainer.build_model(tiny_config(data, cache, idrec_run=str(run)), ds, torch.device("cpu"))
    assert model.encoder.source == str(run) and model.encoder.model_name == "sasrec"
    assert model.mformer.router.in_features == model.encoder.d_c
    assert not any(p.requires_grad for p in model.encoder.parameters())
    blob = torch.load(run / "model.pt", weights_only=True)
    enc_state = {k.removeprefix("model."): v for k, v in model.encoder.state_dict().items()}
    assert all(torch.equal(enc_state[k], v) for k, v in blob["state_dict"].items())  # the trained weights
    with pytest.raises(FileNotFoundError, match="no trained ID model"):
        trainer.build_model(tiny_config(data, cache, idrec_run=str(tmp_path / "missing")), ds, torch.device("cpu"))
    # an ID model of another data set is refused by key, whether it has fewer items (an IndexError deep in the
    # first item refresh) or as many (silently the wrong items' embeddings)
    for items, seed in ((20, 1), (30, 2)):
        other = tiny_dataset(tmp_path / f"other{seed}", items=items, seed=seed)
        n_other = load_dataset(other).n_items
        assert (n_other < ds.n_items) if seed == 1 else (n_other == ds.n_items)
        run_other = tmp_path / f"sasrec-other{seed}"
        train_idrec(IDRecRunConfig(dataset=str(other), model="sasrec", max_epochs=1, progress=False), run_other)
        with pytest.raises(ValueError, match=rf"idrec_run: {run_other} was trained on data set 'synthetic' "
                                             rf"\(fingerprint \w+, {n_other} items\); this run's data set {data} has"):
            trainer.build_model(tiny_config(data, cache, idrec_run=str(run_other)), ds, torch.device("cpu"))


def _scripted_validation(monkeypatch, scores: list[float]):
    """Validation NDCG@10 during training follows ``scores`` (untrained first), then the real one."""
    real, script = trainer.evaluate_split, list(scores)

    def scripted(model, ds, users, split, table, cfg):
        res = real(model, ds, users, split, table, cfg)
        if split == "valid" and script:
            res.metrics["ndcg@10"] = script.pop(0)
        return res

    monkeypatch.setattr(trainer, "evaluate_split", scripted)


def test_phase2_keeps_the_phase1_best_as_the_bar(data, cache, tmp_path, monkeypatch):
    """Phase 2 starts from the phase-1 best; when no phase-2 epoch beats it, the phase-1 best is reported."""
    cfg = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=2, phase2_epochs=2))
    _scripted_validation(monkeypatch, [0.1, 0.5, 0.3, 0.4, 0.45])  # untrained, p1 e0, p1 e1, p2 e0, p2 e1
    rec = trainer.train_laser(cfg, tmp_path / "worse")
    assert (rec["best_phase"], rec["best_epoch"]) == (1, 0)
    best1 = torch.load(tmp_path / "worse" / "checkpoint.pt", weights_only=False)["best1"]["trainable"]
    final = torch.load(tmp_path / "worse" / "model.pt", weights_only=True)["trainable"]
    assert all(torch.equal(best1[k], final[k]) for k in final)  # the reported weights are the phase-1 best's
    _scripted_validation(monkeypatch, [0.1, 0.5, 0.3, 0.4, 0.55])  # now phase 2's last epoch is better
    rec = trainer.train_laser(cfg, tmp_path / "better")
    assert (rec["best_phase"], rec["best_epoch"]) == (2, 1)


@pytest.mark.parametrize("mode", ["carry", "fresh"])
def test_phase2_optimizer_carries_over_or_starts_fresh(data, cache, tmp_path, monkeypatch, mode):
    cfg = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=2, phase2_epochs=1, phase1_patience=5),
                      optim=OptimConfig(batch_size=64, lr=1e-3, phase2_optimizer=mode))
    seen = []
    real = trainer.run_epoch

    def spy(model, rows, table, opt, sched, cfg_, phase, epoch):
        seen.append((phase, id(opt), max((st["step"].item() for st in opt.state.values()), default=0)))
        return real(model, rows, table, opt, sched, cfg_, phase, epoch)

    monkeypatch.setattr(trainer, "run_epoch", spy)
    trainer.train_laser(cfg, tmp_path / mode)
    (_, opt1, _), (_, opt1b, steps_before_e1), (phase, opt2, steps_at_phase2) = seen
    assert phase == 2 and opt1 == opt1b
    if mode == "carry":  # RecFormer: the same Adam (its moments and step count) goes on
        assert opt2 == opt1 and steps_at_phase2 == 2 * steps_before_e1 > 0
    else:
        assert opt2 != opt1 and steps_at_phase2 == 0


def test_length_buckets_keep_every_row_once_and_group_similar_lengths():
    lengths = np.random.default_rng(0).integers(10, 300, size=1000)
    plain = trainer.batch_order(1000, 8, 1, np.random.default_rng(5), lengths)
    bucketed = trainer.batch_order(1000, 8, 32, np.random.default_rng(5), lengths)
    for batches in (plain, bucketed):
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = lambda bs: np.mean([lengths[b].max() - lengths[b].min() for b in bs])  # noqa: E731
    assert spread(bucketed) < spread(plain) / 5  # far less padding per batch
    again = trainer.batch_order(1000, 8, 32, np.random.default_rng(5), lengths)
    assert all(np.array_equal(a, b) for a, b in zip(bucketed, again))  # seeded: resume replays the epoch


def test_validation_cap_and_test_curve_subset(data, cache, tmp_path):
    """max_valid_users caps selection only; test_curve_users tests a seeded subset after every epoch,
    while the reported test still covers every test user."""
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(data)
    n_valid, n_test = ds.eval_users("valid").shape[0], ds.eval_users("test").shape[0]
    cfg = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=1),
                      max_valid_users=n_valid - 3, test_curve_users=4)
    record = trainer.train_laser(cfg, tmp_path / "run")
    assert record["valid"]["n"] == n_valid - 3 and record["test"]["n"] == n_test
    assert [h["test"]["n"] for h in record["history"]] == [4, 4]
    subset = trainer.eval_users(ds, "test", cfg, cap=4)
    assert subset.shape[0] == 4 and set(subset) <= set(ds.eval_users("test"))
    off = trainer.train_laser(dataclasses.replace(cfg, test_curve_users=0), tmp_path / "off")
    assert all("test" not in h for h in off["history"])


def test_a_killed_retest_never_leaves_the_old_results_beside_the_new_ranks(data, cache, tmp_path, kill_on_call,
                                                                            monkeypatch):
    """A retest killed after writing the new ranks kept the old metrics.json: back under the old cap it read as
    finished, reporting 7 test users while ranks.npz (read by the paired t-tests and Figure 2) held all of them.
    The old record now goes first, and the next call under either cap finishes from the final checkpoint."""
    from laser_repro.train.scaffold import RunFolder

    full = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=1), max_valid_users=20)
    capped = dataclasses.replace(full, max_eval_users=7)
    run = tmp_path / "run"
    first = trainer.train_laser(capped, run)
    real = kill_on_call(RunFolder, "write_metrics", 1)  # killed after the new ranks, before the new record
    with pytest.raises(KeyboardInterrupt):
        trainer.train_laser(full, run)
    monkeypatch.setattr(RunFolder, "write_metrics", real)
    assert load_ranks(run / "ranks.npz")["test"].users.shape[0] > 7 and not (run / "metrics.json").exists()
    back = trainer.train_laser(capped, run)
    assert back["test"]["n"] == load_ranks(run / "ranks.npz")["test"].users.shape[0] == 7
    assert back["test"] == pytest.approx(first["test"]) and back["history"] == first["history"]
    # a checkpoint from before 2026-12-07 has no training hash: killed after the old record went, it would be "of a
    # different run config" under the new cap (retrained under --replace-stale); it moves to the new hash first
    blob = torch.load(run / "checkpoint.pt", weights_only=False)
    torch.save({k: v for k, v in blob.items() if k != "training_hash"}, run / "checkpoint.pt")
    real = kill_on_call(RunFolder, "write_ranks", 1)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_laser(full, run)
    monkeypatch.setattr(RunFolder, "write_ranks", real)
    assert not (run / "metrics.json").exists()
    assert trainer.train_laser(full, run)["history"] == first["history"]  # finished from the checkpoint, no training
    # another cache_dir moves the tiny tokenizer's path in the description: the same backbone, still finished
    for name in ("metrics.json", "ranks.npz", "model.pt"):
        (run / name).unlink()
    moved = dataclasses.replace(full, cache_dir=str(tmp_path / "other-cache"))
    assert trainer.train_laser(moved, run, replace_stale=True)["history"] == first["history"]
    # the workflow's way (outputs removed, the final checkpoint resumed) refuses another backbone as a retest does:
    # the checkpoint's item table was embedded by the backbone it records
    for name in ("metrics.json", "ranks.npz", "model.pt"):
        (run / name).unlink()
    blob = torch.load(run / "checkpoint.pt", weights_only=False)
    torch.save({**blob, "backbone": {**blob["backbone"], "dtype": "bfloat16"}}, run / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint\.pt: the backbone here .* is not the one the run was trained "
                                         r"and tested with .*; test it where it was trained"):
        trainer.train_laser(full, run, replace_stale=True)
    # a retest killed after moving the checkpoint (cap 7 -> all) but before the old record went, then run under a third
    # cap: the same training, retested (it was refused: "the final checkpoint is missing or belongs to another run")
    torch.save(blob, run / "checkpoint.pt")  # its own backbone again
    trainer.train_laser(capped, run, replace_stale=True)
    old = {name: (run / name).read_bytes() for name in ("metrics.json", "ranks.npz")}
    trainer.train_laser(full, run)  # the retest moves the checkpoint to the full cap's hash ...
    for name, data in old.items():  # ... the kill left cap 7's record and ranks
        (run / name).write_bytes(data)
    third = trainer.train_laser(dataclasses.replace(full, max_eval_users=12), run)
    assert third["test"]["n"] == 12 and third["history"] == first["history"]
    # nor is a run killed in training resumed on other numerics (a CPU without bf16 units after one with them): its
    # frozen phase-2 table and the bar its phase 2 must beat came from the other
    middle = tmp_path / "middle"
    real = kill_on_call(trainer, "run_epoch", 2)  # phase 1's epoch checkpointed, phase 2's epoch dies
    with pytest.raises(KeyboardInterrupt):
        trainer.train_laser(full, middle)
    monkeypatch.setattr(trainer, "run_epoch", real)
    blob = torch.load(middle / "checkpoint.pt", weights_only=False)
    assert blob["state"]["phase"] != "done"
    torch.save({**blob, "backbone": {**blob["backbone"], "dtype": "bfloat16"}}, middle / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"is not the one the run was trained and tested with .*; resume it where"):
        trainer.train_laser(full, middle, replace_stale=True)


def test_a_finished_run_is_retested_on_more_users_without_training(data, cache, tmp_path):
    """Under a validation cap, max_eval_users changes only the test users: a finished run rerun with another
    cap keeps its training and the ranks it had, ranks the new users with its selected model, and equals a
    run that tested every user from the start. Any other change is still refused as stale."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.train.scaffold import StaleRun

    n_test = load_dataset(data).eval_users("test").shape[0]
    full = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=1), max_valid_users=20)
    capped = dataclasses.replace(full, max_eval_users=7)
    first = trainer.train_laser(capped, tmp_path / "run")
    ranks_before = load_ranks(tmp_path / "run" / "ranks.npz")["test"]
    assert first["test"]["n"] == 7

    digest = hashlib.sha256((tmp_path / "run" / "model.pt").read_bytes()).hexdigest()
    shutil.copytree(tmp_path / "run", tmp_path / "wf")  # the same run, for the workflow's way of rerunning it below
    retested = trainer.train_laser(full, tmp_path / "run")
    # model.pt is left as it is: runs that start from it (init_from) record its digest
    assert hashlib.sha256((tmp_path / "run" / "model.pt").read_bytes()).hexdigest() == digest
    whole = trainer.train_laser(full, tmp_path / "whole")  # the same config, trained and tested at once
    assert retested["test"]["n"] == whole["test"]["n"] == n_test
    assert retested["test"] == pytest.approx(whole["test"], abs=1e-12)
    assert retested["valid"] == first["valid"] and retested["history"] == first["history"]
    assert retested["retested"]["test_users_before"] == 7 and retested["retested"]["ranked_now"] == n_test - 7
    after = load_ranks(tmp_path / "run" / "ranks.npz")["test"]
    mask = np.isin(after.users, ranks_before.users)
    order = np.argsort(after.users[mask])
    assert np.array_equal(after.ranks[mask][order], ranks_before.ranks[np.argsort(ranks_before.users)])
    assert np.array_equal(after.ranks, load_ranks(tmp_path / "whole" / "ranks.npz")["test"].ranks)
    # as the workflow reruns it: Snakemake removes the job's outputs first, so only the checkpoint is left, which
    # resumes under the other test keys (it once was removed as "a different run config" and the run retrained);
    # model.pt comes out byte for byte as the training wrote it, so runs starting from it stay current
    for name in ("metrics.json", "ranks.npz", "model.pt"):
        (tmp_path / "wf" / name).unlink()
    rerun = trainer.train_laser(full, tmp_path / "wf", replace_stale=True)
    log = (tmp_path / "wf" / "train.log").read_text()
    assert log.count("phase 1 epoch 0:") == 1 and "checkpoint of this very training with other max_eval_users" in log
    assert rerun["test"] == pytest.approx(whole["test"], abs=1e-12) and rerun["history"] == first["history"]
    assert np.array_equal(load_ranks(tmp_path / "wf" / "ranks.npz")["test"].ranks,
                          load_ranks(tmp_path / "whole" / "ranks.npz")["test"].ranks)
    assert hashlib.sha256((tmp_path / "wf" / "model.pt").read_bytes()).hexdigest() == digest
    for name in ("metrics.json", "ranks.npz", "model.pt"):  # and back to the cap, from the adopted checkpoint
        (tmp_path / "wf" / name).unlink()
    assert trainer.train_laser(capped, tmp_path / "wf", replace_stale=True)["test"] == pytest.approx(first["test"])
    assert hashlib.sha256((tmp_path / "wf" / "model.pt").read_bytes()).hexdigest() == digest
    # finished under the new config: a third call changes nothing; back to the cap retests again (all kept)
    assert trainer.train_laser(full, tmp_path / "run") == retested
    again = trainer.train_laser(capped, tmp_path / "run")
    assert again["test"] == pytest.approx(first["test"], abs=1e-12) and again["retested"]["ranked_now"] == 0
    assert again["retested"]["trained_at_commit"] == first["git_commit"]
    # the training's finish time, kept over repeated retests (records.newer_record compares trainings, not retests)
    assert again["retested"]["trained_finished_at"] == retested["retested"]["trained_finished_at"] == first["finished_at"]
    # a retest killed after its checkpoint moved to the new hash, before metrics.json: the next call finishes it
    meta = tmp_path / "run" / "metrics.json"
    newest = trainer.train_laser(full, tmp_path / "run")
    meta.write_text(json.dumps(again))  # metrics.json as before that retest; the checkpoint already moved on
    finished = trainer.train_laser(full, tmp_path / "run")
    assert finished["test"] == pytest.approx(whole["test"], abs=1e-12) and finished["retested"]["ranked_now"] == 0
    # never with another backbone (another device's bf16, another model): other numbers for the new users
    meta.write_text(json.dumps({**newest, "backbone": {**newest["backbone"], "dtype": "bfloat16"}}))
    with pytest.raises(ValueError, match="not the one the run was trained and tested with"):
        trainer.train_laser(capped, tmp_path / "run")
    # a training key is not a test key; nor is max_eval_users without a validation cap (it caps selection)
    with pytest.raises(StaleRun):
        trainer.train_laser(dataclasses.replace(capped, seed=1), tmp_path / "run")
    # what a stale check (artifacts, workflow) says of it: a retest is pending while the final checkpoint is here ...
    from laser_repro.train.scaffold import run_folder

    meta.write_text(json.dumps(newest))
    assert "a retest is pending" in run_folder(capped, tmp_path / "run").stale_reason(newest)
    # ... and without it (the selected model) no retest: the refusal says so, not "another config"
    (tmp_path / "run" / "checkpoint.pt").unlink()
    with pytest.raises(StaleRun, match=r"this very training with other max_eval_users, which cannot be retested: "
                                       r"its final checkpoint \(checkpoint.pt\) is missing"):
        trainer.train_laser(capped, tmp_path / "run")
    assert trainer.train_laser(full, tmp_path / "run") == newest  # under its own config it stays finished
    no_cap = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=1), max_eval_users=7)
    trainer.train_laser(no_cap, tmp_path / "nocap")
    with pytest.raises(StaleRun):
        trainer.train_laser(dataclasses.replace(no_cap, max_eval_users=None), tmp_path / "nocap")


def test_a_checkpoint_an_earlier_trainer_wrote_is_refused_by_file(data, cache, tmp_path, kill_on_call, monkeypatch):
    """A checkpoint of the same config in an older layout failed with a bare KeyError or TypeError (a renamed state
    field), naming no file."""
    cfg = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=2, phase2_epochs=1), max_valid_users=20)
    real = kill_on_call(trainer, "run_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_laser(cfg, tmp_path / "run")
    monkeypatch.setattr(trainer, "run_epoch", real)
    path = tmp_path / "run" / "checkpoint.pt"
    blob = torch.load(path, weights_only=False)
    for broken in ({**blob, "state": {**blob["state"], "refreshs": 1}}, {k: v for k, v in blob.items() if k != "table"}):
        torch.save(broken, path)
        with pytest.raises(ValueError, match=r"run/checkpoint\.pt: cannot be resumed by this version of the Laser "
                                             r"trainer, probably written by an earlier one \((TypeError|KeyError)"):
            trainer.train_laser(cfg, tmp_path / "run")
    torch.save(blob, path)
    assert len(trainer.train_laser(cfg, tmp_path / "run")["history"]) == 3  # its own checkpoint resumes


def test_a_training_set_aside_under_another_test_cap_is_found_again(data, cache, tmp_path):
    """Set-aside folders are named by the resume hash, which covers the test cap: back to cap 7 after cap 9 and
    another lr, the same training (set aside under cap 9) was not found, and the run trained again. A folder records
    its checkpoint's training hash, so the run retests that training instead."""
    base = tiny_config(data, cache, phases=PhaseConfig(phase1_max_epochs=1, phase2_epochs=1), max_valid_users=20)
    cap7, cap9 = dataclasses.replace(base, max_eval_users=7), dataclasses.replace(base, max_eval_users=9)
    other = dataclasses.replace(cap9, optim=dataclasses.replace(base.optim, lr=base.optim.lr * 2))
    run = tmp_path / "run"
    first = trainer.train_laser(cap7, run)
    assert trainer.train_laser(cap9, run, replace_stale=True)["test"]["n"] == 9  # a retest of the same training
    trainer.train_laser(other, run, replace_stale=True)  # cap 9's set aside, with its training hash
    back = trainer.train_laser(cap7, run, replace_stale=True)
    assert back["test"] == pytest.approx(first["test"]) and back["history"] == first["history"]
    log = (run / "train.log").read_text()
    assert log.count("phase 1 epoch 0:") == 2  # the first training and the other lr's, no third
