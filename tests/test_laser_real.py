"""Laser's inputs on the real Scientific data (../shared/data): texts, budgets, padding invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laser_repro.laser import template
from laser_repro.laser.config import BiTuningConfig, TemplateConfig
from laser_repro.laser.tiny import tiny_config
from laser_repro.laser.trainer import build_model, training_rows, training_users


@pytest.fixture(scope="module")
def scientific(shared_data):
    from laser_repro.data.sources import recformer

    return recformer.prepare(shared_data / "amazon-scientific-recformer", "scientific")


def test_rows_and_texts_on_scientific(scientific):
    ds = scientific
    cfg = tiny_config()
    users = training_users(ds, cfg)
    hist, tgt = training_rows(ds, users, 2)
    # every training part of n >= 3 items gives n - 2 rows
    assert len(hist) == int(np.clip(ds.train_len.astype(np.int64) - 2, 0, None).sum())
    seq = ds.train_sequence(int(users[0]))
    assert hist[0].tolist() == seq[:2].tolist() and tgt[0] == seq[2]
    text = template.render([ds.items[i] for i in seq[:2]])
    first = ds.items[int(seq[0])]
    assert text.startswith(template.USER_INSTRUCTION + f"\n>> 1. {first['title']} (brand: {first['brand']}, "
                                                       f"category: {first['brand']})")
    assert "&amp;" not in "".join(it["title"] for it in ds.items)  # entities decoded when preparing


def test_minilm_budget_and_padding_invariance_on_real_histories(scientific, tmp_path):
    ds = scientific
    torch.manual_seed(0)
    cfg = tiny_config("", tmp_path, backbone="minilm", template=TemplateConfig(max_tokens=1000), backbone_precision="fp32",
                      bituning=BiTuningConfig(prefix="learnable", n_prefix=8))
    model = build_model(cfg, ds, torch.device("cpu")).eval()
    assert model.tokens.budget == 512 - 8 - 1  # MiniLM has 512 positions
    lengths = ds.train_len
    longest = int(np.argmax(lengths))
    hist = ds.train_sequence(longest)
    ids = model.tokens([hist])[0]
    assert len(ids) <= model.tokens.budget
    # the most recent item is always kept (oldest ones are dropped to fit)
    last = ds.items[int(hist[-1])]
    tail = model.backbone.tokenize_many([f"{last['title']} (brand: {last['brand']}, category: {last['brand']})"])[0][1:]
    assert list(ids[-len(tail):]) == tail
    users = [longest, int(np.argmin(np.where(lengths >= 2, lengths, 99))), 5, 17]
    batch = [ds.train_sequence(u) for u in users]
    assert len({len(t) for t in model.tokens(batch)}) == 4
    with torch.no_grad():
        together = model.embed(batch).h
        for k, h in enumerate(batch):
            assert torch.allclose(model.embed([h]).h[0], together[k], atol=1e-5)
