"""M-Former (Eqs. 4-5) and the losses (Eqs. 6-10) on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from laser_repro.config import ConfigError, from_dict, to_dict
from laser_repro.laser.config import LaserRunConfig, MFormerConfig
from laser_repro.laser.losses import iic_loss, load_balancing_loss, total_loss
from laser_repro.laser.mformer import MFormer, router_weights, select_experts
from laser_repro.train.scaffold import without_neutral

# C (N = 2 real positions + 1 padded one with garbage), W_r (K = 3, d_c = 2)
C = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [9.0, -9.0]]])
MASK = torch.tensor([[True, True, False]])
W_R = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
# by hand: softmax([2,0,0]) = [e^2, 1, 1] / (e^2 + 2); softmax([0,1,0]) = [1, e, 1] / (e + 2)
P1 = [math.e**2 / (math.e**2 + 2), 1 / (math.e**2 + 2), 1 / (math.e**2 + 2)]
P2 = [1 / (math.e + 2), math.e / (math.e + 2), 1 / (math.e + 2)]
W_HAND = [0.4994638, 0.3413119, 0.1592243]  # Eq. 4: mean over the two real positions


def test_eq4_router_weights_and_top_k_by_hand():
    w, p = router_weights(C @ W_R.T, MASK)
    assert w[0].tolist() == pytest.approx(W_HAND, abs=1e-6)
    assert w[0].tolist() == pytest.approx([(a + b) / 2 for a, b in zip(P1, P2)], abs=1e-6)
    assert p[0, 0].tolist() == pytest.approx(P1, abs=1e-6)
    idx, agg = select_experts(w, top_k=2, aggregation="raw")
    assert idx[0].tolist() == [0, 1]
    assert agg[0].tolist() == pytest.approx(W_HAND[:2], abs=1e-6)
    _, renorm = select_experts(w, 2, "renormalize")
    assert renorm[0].tolist() == pytest.approx([0.5940512, 0.4059488], abs=1e-6)
    _, soft = select_experts(w, 2, "softmax")
    assert soft[0].tolist() == pytest.approx([0.5394558, 0.4605442], abs=1e-6)
    idx1, agg1 = select_experts(w, top_k=1)
    assert idx1[0].tolist() == [0] and agg1[0].tolist() == pytest.approx([W_HAND[0]], abs=1e-6)
    with pytest.raises(ValueError, match="aggregation"):
        select_experts(w, 2, "mean")


def test_eqs7_9_load_balancing_by_hand():
    _, p = router_weights(C @ W_R.T, MASK)
    # argmax: position 1 -> expert 0, position 2 -> expert 1, padded position ignored: f = [1/2, 1/2, 0]
    expected = 3 * (0.5 * W_HAND[0] + 0.5 * W_HAND[1])
    assert load_balancing_loss(p, MASK).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.2611636, abs=1e-6)
    # perfectly balanced uniform routing gives exactly 1
    uniform = torch.full((2, 3, 4), 0.25)
    uniform[:, :, 0] += 1e-3  # break argmax ties deterministically: all argmax = 0 -> f = [1,0,0,0]
    uniform = uniform / uniform.sum(-1, keepdim=True)
    lb = load_balancing_loss(uniform, torch.ones(2, 3, dtype=torch.bool)).item()
    w0 = (0.25 + 1e-3) / (1 + 1e-3)
    assert lb == pytest.approx(4 * w0, abs=1e-6)
    # gradient flows through w, not through the argmax
    logits = (C @ W_R.T).requires_grad_(True)
    load_balancing_loss(router_weights(logits, MASK)[1], MASK).backward()
    assert logits.grad[0, :2].abs().sum() > 0 and logits.grad[0, 2].abs().sum() == 0


def test_eq6_iic_and_eq10_by_hand():
    users = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    items = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # user 0: cos = [1, 0, -1] -> -log softmax(./0.5)[0] = log(1 + e^-2 + e^-4)
    # user 1: cos = [0, 1, 0] -> target 1: log(1 + 2 e^-2)
    loss = iic_loss(users, items, torch.tensor([0, 1]), tau=0.5)
    hand = (math.log(1 + math.exp(-2) + math.exp(-4)) + math.log(1 + 2 * math.exp(-2))) / 2
    assert loss.item() == pytest.approx(hand, abs=1e-6)
    assert total_loss(torch.tensor(2.0), torch.tensor(3.0), 0.01).item() == pytest.approx(2.03)
    assert total_loss(torch.tensor(2.0), None, 0.01).item() == 2.0


def _mformer(**kw) -> MFormer:
    cfg = dict(n_experts=4, top_k=2, n_queries=3, d_model=16, n_layers=4, n_heads=2, intermediate=32, dropout=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return MFormer(MFormerConfig(**cfg), d_c=6, d_llm=10).eval()


def test_mformer_shapes_blocks_and_padding_invariance():
    m = _mformer()
    assert [b.cross_attn is not None for b in m.blocks] == [True, False, True, False]  # every 2nd block
    assert tuple(m.router.weight.shape) == (4, 6) and m.router.bias is None
    c = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = m(c, mask)
    assert tuple(out.prefix.shape) == (2, 3, 10) and tuple(out.weights.shape) == (2, 4)
    assert tuple(out.experts.shape) == (2, 2)
    alone = m(c[1:, :2], mask[1:, :2])  # row 1 without its padding
    assert torch.allclose(alone.prefix[0], out.prefix[1], atol=1e-5)
    garbage = c.clone()
    garbage[1, 2:] = 100.0
    assert torch.allclose(m(garbage, mask).prefix, out.prefix, atol=1e-5)


def test_only_selected_experts_shape_the_prefix():
    m = _mformer()
    c, mask = torch.randn(1, 3, 6), torch.ones(1, 3, dtype=torch.bool)
    out = m(c, mask)
    chosen = set(out.experts[0].tolist())
    other = next(j for j in range(4) if j not in chosen)
    with torch.no_grad():
        m.queries[other] += torch.randn(3, 16)
    assert torch.allclose(m(c, mask).prefix, out.prefix)
    with torch.no_grad():
        m.queries[next(iter(chosen))] += torch.randn(3, 16)
    assert not torch.allclose(m(c, mask).prefix, out.prefix, atol=1e-4)


def test_query_scale_changes_the_parametrisation_not_the_function():
    """The queries pass a LayerNorm first (BLIP-2), so their scale is invisible to the M-Former: drawn at std 1
    instead of 0.02 (the same draws x 50) it computes the same prefix, each query row's gradient is orthogonal to the
    row's centred values and 50 times smaller (the curvature along a row goes as 1 / std^2: issue 11's sharpness)."""
    small, big = _mformer(), _mformer(query_init_std=1.0)
    assert small.cfg.query_init_std == 0.02  # BLIP-2's initializer_range
    assert torch.allclose(big.queries, 50 * small.queries)
    assert small.queries.std().item() == pytest.approx(0.02, rel=0.2)
    c, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    grads = []
    for m in (small, big):
        out = m(c, mask)
        (out.prefix * torch.linspace(-1, 1, 10)).square().sum().backward()
        grads.append(m.queries.grad)
    assert torch.allclose(big(c, mask).prefix, small(c, mask).prefix, atol=1e-5)
    g, q = grads[0], small.queries.detach()
    centred = q - q.mean(dim=-1, keepdim=True)
    used = g.flatten(1).norm(dim=1) > 0  # the selected experts' rows
    assert used.sum() >= 2
    cos = (g * centred).sum(-1) / (g.norm(dim=-1) * centred.norm(dim=-1)).clamp(min=1e-30)
    assert cos[used].abs().max() < 1e-4
    assert torch.allclose(grads[1] * 50, grads[0], rtol=1e-3, atol=1e-7)
    with pytest.raises(ConfigError, match="query_init_std"):
        from_dict(MFormerConfig, {"query_init_std": 0.0}, "mformer")
    # a key added later: at its default it leaves the resume hash of earlier runs alone
    paper = to_dict(LaserRunConfig())
    assert "query_init_std" not in without_neutral(paper, LaserRunConfig.HASH_NEUTRAL)["mformer"]
    paper["mformer"]["query_init_std"] = 1.0
    assert without_neutral(paper, LaserRunConfig.HASH_NEUTRAL)["mformer"]["query_init_std"] == 1.0


def _expert_output(m: MFormer, c: torch.Tensor, mask: torch.Tensor, expert: int) -> torch.Tensor:
    """Q'_j: expert ``expert``'s queries through every block on their own (Eq. 5), by hand."""
    q = m.query_norm(m.queries[expert]).unsqueeze(0).expand(c.shape[0], -1, -1)
    ctx = m.ctx_proj(c.float())
    for block in m.blocks:
        q = block(q, ctx, mask)
    return q


def test_eq4_eq5_aggregation_with_top_k_below_k_and_unequal_weights():
    """prefix = out_proj(sum over the top-k experts of w_j Q'_j) with the raw Eq. 4 weights."""
    m = _mformer(n_experts=4, top_k=2)
    torch.manual_seed(3)
    with torch.no_grad():
        m.router.weight.copy_(torch.randn_like(m.router.weight) * 3)  # clearly unequal routing
    c, mask = torch.randn(3, 4, 6), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = m(c, mask)
        w, _ = router_weights(m.router(c), mask)
        for b in range(3):
            top = torch.topk(w[b], 2)
            assert out.experts[b].tolist() == top.indices.tolist()
            assert abs(top.values[0] - top.values[1]) > 1e-3 and top.values.sum() < 0.999  # unequal, not summing to 1
            hand = sum(float(wj) * _expert_output(m, c[b:b + 1], mask[b:b + 1], int(j))[0]
                       for wj, j in zip(top.values, top.indices))
            assert torch.allclose(out.prefix[b], m.out_proj(hand), atol=1e-5)
            # not the plain mean of the selected experts, nor renormalised weights
            mean = sum(_expert_output(m, c[b:b + 1], mask[b:b + 1], int(j))[0] for j in top.indices) / 2
            assert not torch.allclose(out.prefix[b], m.out_proj(mean), atol=1e-3)


def test_with_every_expert_selected_the_eq4_weights_sum_to_one():
    """top_k = K: the router's softmax weights over all experts sum to 1, so the "renormalize" option
    changes nothing (the weighted sum itself is checked with top_k < K in the test above); K = 1: weight 1."""
    m = _mformer(top_k=4)
    c, mask = torch.randn(2, 3, 6), torch.ones(2, 3, dtype=torch.bool)
    out = m(c, mask)
    assert torch.allclose(out.weights.sum(dim=1), torch.ones(2), atol=1e-6)
    assert sorted(out.experts[0].tolist()) == [0, 1, 2, 3]
    m.cfg = MFormerConfig(**{**m.cfg.__dict__, "aggregation": "renormalize"})
    assert torch.allclose(out.prefix, m(c, mask).prefix, atol=1e-5)
    one = _mformer(n_experts=1, top_k=1)  # "one expert": K = 1
    out = one(c, mask)
    assert out.experts.tolist() == [[0], [0]] and torch.allclose(out.weights, torch.ones(2, 1))


def test_top_k_above_n_experts_is_an_error_not_a_clamp():
    from laser_repro.config import ConfigError, from_dict
    from laser_repro.laser.config import LaserRunConfig

    with pytest.raises(ValueError, match="mformer.top_k: 3 experts cannot be selected from n_experts = 1"):
        _mformer(n_experts=1, top_k=3)(torch.randn(1, 2, 6), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ConfigError, match=r"^mformer\.top_k: 3 experts cannot be selected from n_experts = 2"):
        from_dict(LaserRunConfig, {"mformer": {"n_experts": 2}})
    assert from_dict(LaserRunConfig, {"mformer": {"n_experts": 2, "top_k": 2}}).mformer.top_k == 2


def test_flop_and_mfu_arithmetic_by_hand():
    from torch import nn

    from laser_repro.laser.flops import forward_flops_per_token, mfu, nonembedding_parameters, step_flops

    model = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 16), nn.Linear(16, 8, bias=False))
    assert nonembedding_parameters(model) == 8 * 16 + 16 + 16 * 8  # the embedding table is not counted
    per_token = forward_flops_per_token(1_000_000, n_layers=2, width=64, seq_len=100)
    assert per_token == 2_000_000 + 4 * 2 * 100 * 64 == 2_051_200
    assert step_flops(10, per_token) == 41_024_000  # frozen: forward + activation gradients
    assert step_flops(10, per_token, trained_weights=True) == 61_536_000
    assert mfu(41_024_000, 0.5, 1e9) == pytest.approx(0.082048)


def test_mformer_gradients_are_bit_repeatable_on_two_cpu_threads():
    """The real-data runs' M-Former (8 experts, top 3, 32 queries, d_m 128) on a batch of 8: three backward passes of
    the same batch give bit-identical gradients with two threads. Gathering the selected experts' queries by
    advanced indexing (``queries[idx]``) did not: its CPU backward accumulates duplicate indices across threads in
    no fixed order (PyTorch lists it as nondeterministic), so the queries' gradient differed in the 8th digit and
    two runs of the same config drifted apart from their second step."""
    cfg = MFormerConfig(n_experts=8, top_k=3, n_queries=32, d_model=128, n_layers=2, n_heads=4, intermediate=512,
                        dropout=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        m = MFormer(cfg, d_c=64, d_llm=96)
        c, mask = torch.randn(8, 10, 64), torch.ones(8, 10, dtype=torch.bool)
        weight = torch.randn(8, 32, 96)
        grads = []
        for _ in range(3):
            m.zero_grad(set_to_none=True)
            (m(c, mask).prefix * weight).sum().backward()
            grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    finally:
        torch.set_num_threads(threads)
    assert len(grads[0]) == len(list(m.parameters())) and grads[0]["queries"].abs().sum() > 0
    for other in grads[1:]:
        differ = [n for n in grads[0] if not torch.equal(grads[0][n], other[n])]
        assert differ == []
