"""Loss terms (eqs. 2-4) and fusions on hand-made tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_ssd.models.components.fusion import FUSION_KINDS, build_fusion
from lightning_ssd.models.components.objective import ImitationObjective, cosine_loss, draft_kl

D, K, V = 8, 4, 11


def test_cosine_loss_values():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])  # same direction, orthogonal, opposite
    assert cosine_loss(x[:1], y[:1]).item() == pytest.approx(0.0, abs=1e-7)
    assert cosine_loss(x[1:2], y[1:2]).item() == pytest.approx(1.0)
    assert cosine_loss(x[2:], y[2:]).item() == pytest.approx(2.0)
    assert cosine_loss(x, y).item() == pytest.approx(1.0)


def test_kl_is_draft_to_full_direction():
    p_i = torch.tensor([[0.90, 0.09, 0.01]])
    p_l = torch.tensor([[0.30, 0.30, 0.40]])
    expected = (p_i * (p_i / p_l).log()).sum().item()  # KL(p_I || p_L) = sum_v p_I log(p_I / p_L)
    reverse = (p_l * (p_l / p_i).log()).sum().item()
    got = draft_kl(p_i.log(), p_l.log()).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert abs(got - reverse) > 0.3  # the two directions differ here, so the test pins the direction


def test_forward_kl_direction_is_the_full_models_soft_labels():
    torch.manual_seed(0)
    logits_i, logits_l = torch.randn(6, V), torch.randn(6, V)
    head = torch.nn.Identity()
    targets = torch.zeros(6, dtype=torch.long)
    losses = {}
    for direction in ("reverse", "forward"):
        objective = ImitationObjective(V, w_cs=0.0, w_ce=0.0, w_anchor=0.0, kl_direction=direction)
        losses[direction] = objective(logits_i, [], logits_l, targets, head).kl
    p_i, p_l = logits_i.softmax(-1), logits_l.softmax(-1)
    assert losses["reverse"].item() == pytest.approx((p_i * (p_i / p_l).log()).sum(-1).mean().item(), rel=1e-5)
    assert losses["forward"].item() == pytest.approx((p_l * (p_l / p_i).log()).sum(-1).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="kl_direction"):
        ImitationObjective(V, kl_direction="both")


def test_kl_is_zero_for_equal_distributions_and_invariant_to_logit_shift():
    logits = torch.randn(5, V)
    assert draft_kl(logits, logits + 3.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", FUSION_KINDS)
def test_fusion_shapes_and_average_at_init(kind):
    states = torch.randn(K, 2, 3, D)
    fusion = build_fusion(kind, D, K)
    out = fusion(states)
    assert out.shape == (2, 3, D)
    torch.testing.assert_close(out, states.mean(0), atol=1e-6, rtol=1e-5)


def test_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="fusion must be one of"):
        build_fusion("sum", D)


def _head():
    torch.manual_seed(0)
    head = torch.nn.Linear(D, V)
    head.requires_grad_(False)
    return head


def _inputs(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    deep = torch.randn(K, n, D, generator=g)
    targets = torch.randint(0, V, (n,), generator=g)
    return deep, targets


def test_terms_follow_weights():
    head = _head()
    deep, targets = _inputs()
    x_i = torch.randn(16, D)
    logits_l = head(deep[-1])
    ce_only = ImitationObjective(D, "concat", K, w_cs=0.0, w_kl=0.0, w_ce=1.0)(x_i, deep, logits_l, targets, head)
    assert ce_only.cosine is None and ce_only.kl is None and ce_only.fusion_anchor is None
    assert ce_only.total.item() == pytest.approx(F.cross_entropy(head(x_i), targets).item())
    full = ImitationObjective(D, "concat", K, w_cs=2.0, w_kl=0.5, w_ce=1.0)(x_i, deep, logits_l, targets, head)
    expected = 2.0 * full.cosine + 0.5 * full.kl + full.ce + full.fusion_anchor
    assert full.total.item() == pytest.approx(expected.item(), rel=1e-6)
    average = ImitationObjective(D, "average", K)(x_i, deep, logits_l, targets, head)
    assert average.fusion_anchor is None  # nothing to anchor without fusion parameters


def test_invalid_weights_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        ImitationObjective(D, w_cs=0.0, w_kl=0.0, w_ce=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        ImitationObjective(D, w_kl=-1.0)


@pytest.mark.parametrize("kind", ["concat", "attention"])
def test_cosine_term_sends_no_gradient_to_the_fusion(kind):
    head = _head()
    deep, targets = _inputs()
    x_i = torch.randn(16, D, requires_grad=True)
    objective = ImitationObjective(D, kind, K, w_cs=1.0, w_kl=0.0, w_ce=0.0, w_anchor=1.0)
    losses = objective(x_i, deep, head(deep[-1]), targets, head)
    grads = torch.autograd.grad(losses.cosine, [x_i, *objective.fusion.parameters()], allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert all(g is None for g in grads[1:])


def test_zero_anchor_freezes_the_fusion_at_its_average():
    objective = ImitationObjective(D, "concat", K, w_anchor=0.0)
    assert not objective.trainable_fusion
    assert all(not p.requires_grad for p in objective.fusion.parameters())


def _optimise_fusion_only(loss_fn, fusion, steps=300):
    opt = torch.optim.Adam(fusion.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


def test_target_side_alone_cannot_collapse_the_cosine_term():
    """FACTS.md: a trainable concat projection can drive 1 - cos to ~0 by moving the target. Ours cannot."""
    head = _head()
    deep, targets = _inputs(n=64)
    x_i = deep[0].clone()  # a fixed imitation output that only resembles the shallowest fused state
    logits_l = head(deep[-1])

    naive = build_fusion("concat", D, K)  # the cosine gradient reaching the projection
    _optimise_fusion_only(lambda: cosine_loss(x_i, naive(deep)), naive)
    assert cosine_loss(x_i, naive(deep)).item() < 0.05  # collapsed: the target moved onto x_I

    objective = ImitationObjective(D, "concat", K, w_cs=1.0, w_kl=1.0, w_ce=1.0)
    start = objective(x_i, deep, logits_l, targets, head).cosine.item()
    _optimise_fusion_only(lambda: objective(x_i, deep, logits_l, targets, head).total, objective.fusion)
    after = objective(x_i, deep, logits_l, targets, head)
    assert after.cosine.item() > 0.5 * start  # the target did not move toward x_I
    assert after.cosine.item() > 0.5
    assert math.isfinite(after.fusion_anchor.item())
