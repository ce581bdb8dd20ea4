"""ID models: training instances, cloze masking, length buckets, BERT4Rec's appended [MASK]."""

import numpy as np
import pytest
import torch

from laser_repro.idrec.base import length_buckets, next_item_instances, pad_histories, trim
from laser_repro.idrec.bert4rec import cloze_mask
from laser_repro.idrec.registry import MODELS, build_model, uses_text


def test_pad_histories_keeps_last_items_right_padded():
    out = pad_histories([[5, 6, 7, 8], [2], []], max_len=3)
    assert out.tolist() == [[7, 8, 9], [3, 0, 0], [0, 0, 0]]  # tokens = item + 1


def test_next_item_instances_hand_case():
    X, y = next_item_instances([np.array([4, 5, 6, 7]), np.array([1, 2])], max_len=2)
    assert X.tolist() == [[5, 0], [5, 6], [6, 7], [2, 0]]
    assert y.tolist() == [5, 6, 7, 2]


def test_bert4rec_instances_include_the_target():
    model = build_model("bert4rec", 10, {"max_len": 3})
    X, y = model.make_instances([np.array([4, 5, 6, 7])])
    assert X.tolist() == [[5, 6, 0], [5, 6, 7], [6, 7, 8]]
    assert y.tolist() == [5, 6, 7]


def test_cloze_mask_rules():
    tokens = np.array([[3, 4, 5, 0], [7, 0, 0, 0], [1, 2, 3, 4]])
    rng = np.random.default_rng(0)
    only_last = cloze_mask(tokens, mask_ratio=0.9, ft_ratio=1.0, rng=rng)
    assert only_last.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    none_drawn = cloze_mask(tokens, mask_ratio=0.0, ft_ratio=0.0, rng=rng)
    assert none_drawn.tolist() == only_last.tolist()  # at least one item: the last
    many = cloze_mask(np.tile(np.arange(1, 51), (400, 1)), mask_ratio=0.2, ft_ratio=0.0, rng=rng)
    assert 0.18 < many.mean() < 0.22
    assert not (cloze_mask(tokens, 1.0, 0.0, rng) & (tokens == 0)).any()  # padding is never masked


def test_length_buckets_partition_rows():
    tokens = torch.tensor([[1, 2, 3, 0, 0, 0, 0, 0, 0]] * 2 + [[1] * 9, [1, 0, 0, 0, 0, 0, 0, 0, 0]])
    groups = length_buckets(tokens)
    assert sorted(torch.cat(groups).tolist()) == [0, 1, 2, 3]
    assert [g.tolist() for g in groups] == [[3], [0, 1], [2]]


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"kar"}))  # KAR rows carry a user column (tests/test_kar.py)
def test_bucketed_user_states_equal_padded_batch(name):
    torch.manual_seed(0)
    model = build_model(name, 20, {"hidden": 16, "max_len": 12} | ({"inner": 32} if name not in ("gru4rec", "lrurec") else {})
                        | ({"text_dim": 8} if name == "fdsa" else {}),
                        text_features=torch.randn(20, 8) if uses_text(name) else None)
    model.eval()
    rng = np.random.default_rng(0)
    hist = [rng.integers(0, 20, rng.integers(1, 12)).tolist() for _ in range(9)]
    tokens = torch.as_tensor(pad_histories(hist, model.history_len))
    with torch.no_grad():
        batched = model.user_states(tokens)
        singles = torch.cat([model.user_states(torch.as_tensor(pad_histories([h], model.history_len))) for h in hist])
        whole = model._last_states(trim(tokens))
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, whole, atol=1e-5, rtol=1e-5)
    assert model.full_scores(tokens).shape == (9, 20)


def test_bert4rec_scores_from_an_appended_mask():
    torch.manual_seed(0)
    model = build_model("bert4rec", 20, {"hidden": 16, "inner": 32, "max_len": 5}).eval()
    with torch.no_grad():
        got = model.user_states(torch.tensor([[3, 4, 0, 0], [1, 2, 3, 4]]))
        a = model.sequence_states(torch.tensor([[3, 4, 21]]))[0, 2]  # mask token = n_items + 1
        b = model.sequence_states(torch.tensor([[1, 2, 3, 4, 21]]))[0, 4]
        # a history longer than max_len - 1 keeps its last max_len - 1 items
        c = model.user_states(torch.tensor([[9, 1, 2, 3, 4]]))[0]
    torch.testing.assert_close(got[0], a)
    torch.testing.assert_close(got[1], b)
    torch.testing.assert_close(c, b)


def test_unknown_model_and_key_are_errors():
    with pytest.raises(ValueError, match="unknown ID recommender"):
        build_model("caser", 10)
    with pytest.raises(ValueError, match="hiden"):
        build_model("sasrec", 10, {"hiden": 8})


def test_fdsa_output_goes_through_recboles_layernorm_and_dropout():
    """RecBole's FDSA: concat_layer -> LayerNorm -> dropout, one LayerNorm shared with both input streams (the
    output was the bare concat layer: per-user std ~0.08 instead of the LayerNorm's 1)."""
    torch.manual_seed(0)
    model = build_model("fdsa", 20, {"hidden": 16, "heads": 2, "inner": 32, "max_len": 8, "text_dim": 6},
                        text_features=torch.randn(20, 6)).eval()
    states = model.sequence_states(torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]))
    torch.testing.assert_close(states.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(states.std(-1, unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm) and "encoder" not in n] == ["ln"]
    model.train()  # ... and dropout after it: a training forward differs from the eval one
    assert not torch.allclose(model.sequence_states(torch.tensor([[1, 2, 3, 0]])), states[:1])


def test_lrurec_recurrence_matches_the_codes_masked_step_by_step_loop():
    """The closed form equals LlamaRec's recurrence run step by step: h_t = lambda h_{t-1} m_{t-1} + gamma B x_t,
    where an earlier position feeds forward only when real (m = 1) and a padding position keeps its own input;
    2d complex state channels; y = LayerNorm(x + Re(C h))."""
    from laser_repro.idrec.lrurec import LRULayer

    torch.manual_seed(0)
    layer = LRULayer(4, 0.5, 0.9, dropout=0.0, eps=1e-5)
    assert layer.params_log.shape == (3, 8) and layer.in_proj.weight.shape == (8, 4)
    assert layer.in_proj.weight.is_complex()
    x = torch.randn(2, 5, 4)
    valid = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)  # row 0 starts with the padding token
    h = layer.states(x, valid)
    lam, gamma = layer.decay(), torch.exp(layer.params_log[2])
    for b in range(2):
        state = torch.zeros(8, dtype=torch.cfloat)
        for t in range(5):
            state = lam * state * (valid[b, t - 1] if t else 0) + gamma * (layer.in_proj(x[b, t].to(torch.cfloat)))
            if b == 0 or t < 3:  # (the states after the last item of a right-padded row are never read)
                torch.testing.assert_close(h[b, t], state, atol=1e-5, rtol=1e-5)
    out = layer(x, valid)
    torch.testing.assert_close(out, layer.layer_norm(layer.out_proj(h).real + x))
    assert bool((lam.abs() < 1).all()) and bool((lam.abs() > 0.5 - 1e-6).all())


def test_lrurec_rows_labels_init_and_optimiser_follow_the_code():
    from laser_repro.idrec.lrurec import LRURec

    torch.manual_seed(0)
    model = build_model("lrurec", 20, {"hidden": 8, "max_len": 3}).eval()  # no dropout: two passes agree
    X, Y = model.make_instances([np.array([0, 1, 2, 3, 4, 5, 6]), np.array([7, 8]), np.array([9, 10, 11, 12])])
    # 7 items >= 2 max_len: rows of 3 from the end ([4, 5, 6], [1, 2, 3]); shorter sequences are one row; labels are
    # a row's last 3 items, inputs the items before them, the padding token (0) before the first (tokens = item + 1)
    assert Y.tolist() == [[5, 6, 7], [2, 3, 4], [8, 9, 0], [11, 12, 13]]
    assert X.tolist() == [[0, 5, 6], [0, 2, 3], [0, 8, 0], [10, 11, 12]]
    loss = model.batch_loss(torch.as_tensor(X), torch.as_tensor(Y), np.random.default_rng(0))
    states = model.sequence_states(torch.as_tensor(X))
    keep = torch.as_tensor(Y) > 0
    logits = states[keep] @ model.embedding.weight.T + model.bias  # 21 tokens, padding included
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, torch.as_tensor(Y)[keep]))
    assert int(keep.sum()) == 11 and model.full_scores(torch.tensor([[1, 2, 0]])).shape == (1, 20)
    # truncated normal N(0, 0.02) within 2 std everywhere but the LayerNorms and the LRU's log parameters
    w = model.blocks[0].lru.in_proj.weight.detach()
    assert float(torch.view_as_real(w).abs().max()) <= 0.04
    assert float(model.blocks[0].ffn.w_1.bias.detach().abs().max()) > 0
    assert float(model.bias.detach().abs().max()) <= 0.04 and bool(model.layer_norm.weight.eq(1).all())
    decay, no_decay = model.param_groups(0.01)
    named = {id(p): n for n, p in model.named_parameters()}
    assert {named[id(p)] for p in no_decay["params"]} == {n for n in named.values() if "bias" in n or "layer_norm" in n}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0 and "blocks.0.lru.params_log" in {
        named[id(p)] for p in decay["params"]}
    assert model.optimizer_options() == {"eps": 1e-9} and LRURec.max_grad_norm == 5.0


def test_lrurec_stays_finite_when_a_decay_underflows_to_zero():
    """lambda^0 must be 1 even where lambda is 0 (torch's 0 ** 0 is NaN)."""
    from laser_repro.idrec.lrurec import LRULayer

    torch.manual_seed(0)
    layer = LRULayer(4, 0.5, 0.9, dropout=0.0, eps=1e-5)
    with torch.no_grad():
        layer.params_log[0, 0] = 4.7  # nu = e^4.7 ~ 110: |lambda| = e^-110 underflows in float32
    assert float(layer.decay()[0].abs()) == 0.0
    out = layer(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
    assert bool(torch.isfinite(out).all())


def test_lrurec_trains_users_with_one_training_item(tmp_path):
    """The code's loader trains every user; the suite's other ID models need two training items for an instance."""
    from laser_repro.data.dataset import from_sequences, load_dataset, save_dataset
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import training_users

    items = [{"id": str(i), "title": str(i), "brand": "", "category": ""} for i in range(6)]
    ds = load_dataset(save_dataset(from_sequences("d", "synthetic", items, ["a", "b"], [[0, 1, 2, 3], [4, 5, 0]]),
                                   tmp_path / "d"))
    assert ds.train_len.tolist() == [2, 1]
    cfg = IDRecRunConfig(dataset=str(tmp_path / "d"))
    assert training_users(ds, cfg, build_model("lrurec", 6, {"hidden": 8}).min_train_items).tolist() == [0, 1]
    assert training_users(ds, cfg, build_model("sasrec", 6, {"hidden": 8}).min_train_items).tolist() == [0]
