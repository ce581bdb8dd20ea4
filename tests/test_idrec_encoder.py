"""The collaborative encoder API that feeds Laser's M-Former (paper §4.2)."""

import pytest
import torch

from laser_repro.idrec.encoder import CollaborativeEncoder, random_collaborative_encoder, window_mask
from laser_repro.idrec.registry import MODELS

SMALL = {"hidden": 16, "max_len": 12}


def kwargs(name):
    return SMALL | ({"inner": 32} if name not in ("gru4rec", "lrurec") else {}) | ({"text_dim": 8} if name == "fdsa" else {})


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"zesrec", "kar"}))  # built from text: no random form
def test_states_of_the_last_window_items_padding_invariant(name):
    enc = random_collaborative_encoder(50, model=name, seed=0, window=4, **kwargs(name))
    assert enc.d_c == 16 and enc.window == 4
    hist = [[1, 2, 3, 4, 5, 6], [7], [8, 9]]
    C, mask = enc.encode(hist, "cpu")
    assert C.shape == (3, 4, 16) and mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert torch.all(C[~mask] == 0)
    alone, _ = enc.encode([[3, 4, 5, 6]])  # only the last `window` items are read
    torch.testing.assert_close(C[0], alone[0], atol=1e-5, rtol=1e-5)
    item, item_mask = enc.encode([[7]])  # an item = a history of one
    assert item.shape == (1, 1, 16) and item_mask.tolist() == [[True]]
    torch.testing.assert_close(C[1, 0], item[0, 0], atol=1e-5, rtol=1e-5)
    # the raw forward: right-padded dense item indices with a mask
    items = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]])
    m = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    out = enc(items, m)
    torch.testing.assert_close(out, C[:2], atol=1e-5, rtol=1e-5)
    assert window_mask(m, 4).tolist() == mask[:2].tolist()


def test_bert4rec_states_have_no_mask_token_and_differ_by_context():
    enc = random_collaborative_encoder(50, model="bert4rec", seed=0, **SMALL, inner=32)
    C, _ = enc.encode([[1, 2, 3]])
    direct = enc.model.sequence_states(torch.tensor([[2, 3, 4]]))  # tokens = items + 1, nothing appended
    torch.testing.assert_close(C, direct)
    other, _ = enc.encode([[9, 2, 3]])
    assert not torch.allclose(C[0, 2], other[0, 2])  # bidirectional: context changes a position's state


def test_frozen_and_always_in_eval_mode():
    enc = random_collaborative_encoder(30, seed=1, **SMALL, inner=32)
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training
    a, _ = enc.encode([[1, 2, 3]])
    b, _ = enc.encode([[1, 2, 3]])
    assert torch.equal(a, b) and not a.requires_grad  # no dropout


def test_random_encoder_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = random_collaborative_encoder(30, seed=5, **SMALL, inner=32)
    assert torch.equal(torch.rand(1), expected)
    b = random_collaborative_encoder(30, seed=5, **SMALL, inner=32)
    c = random_collaborative_encoder(30, seed=6, **SMALL, inner=32)
    x, _ = a.encode([[1, 2]])
    assert torch.equal(x, b.encode([[1, 2]])[0]) and not torch.equal(x, c.encode([[1, 2]])[0])
    assert random_collaborative_encoder(30).d_c == 64  # paper default: BERT4Rec, 2 x 32 per head


def test_bad_inputs():
    enc = random_collaborative_encoder(30, **SMALL, inner=32)
    with pytest.raises(ValueError, match="right-padded"):
        enc(torch.tensor([[1, 2]]), torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="window"):
        CollaborativeEncoder(enc.model, window=0)
    with pytest.raises(FileNotFoundError, match="train-idrec"):
        from laser_repro.idrec.encoder import load_collaborative_encoder

        load_collaborative_encoder("/nonexistent/run")
