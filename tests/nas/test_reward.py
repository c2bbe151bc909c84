import math

import pytest

from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.nas.reward import draft_reward


def test_reward_is_the_expected_speedup_by_hand():
    cost = CostModel(L=8, n=2, A=0.5, H=0.25)
    reward = draft_reward(cost, alpha=0.8, draft=4)
    tokens = (1 - 0.8**5) / (1 - 0.8)  # 3.3616 tokens per cycle
    cycle = 5 * 2 + 4 * (0.5 + 0.25) + (8 - 2) + 0.25  # 19.25 layer-equivalents
    assert reward.speedup == pytest.approx(tokens * (8 + 0.25) / cycle)
    assert reward.tau_expected == pytest.approx(tokens)
    assert reward.ceiling == pytest.approx(8.25 / 2.75)
    metrics = reward.metrics()
    assert metrics["default"] == reward.speedup
    assert all(isinstance(v, float) for v in metrics.values())


def test_quality_and_cost_pull_in_opposite_directions():
    cheap, dear = CostModel(L=8, n=2, A=0.1, H=0.25), CostModel(L=8, n=2, A=1.5, H=0.25)
    assert draft_reward(cheap, 0.7, 4).speedup > draft_reward(dear, 0.7, 4).speedup
    assert draft_reward(dear, 0.9, 4).speedup > draft_reward(dear, 0.7, 4).speedup
    # a dearer network wins only if it buys enough acceptance
    assert draft_reward(dear, 0.95, 4).speedup > draft_reward(cheap, 0.5, 4).speedup


def test_perfect_acceptance_drafts_d_plus_one_tokens_per_cycle():
    reward = draft_reward(CostModel(L=4, n=1, A=0.0, H=0.0), alpha=1.0, draft=3)
    assert reward.tau_expected == 4
    assert reward.speedup == pytest.approx(4 * 4 / (4 * 1 + 3))


@pytest.mark.parametrize(("alpha", "draft"), [(math.nan, 4), (-0.1, 4), (1.5, 4), (0.5, 0)])
def test_undefined_inputs_raise(alpha, draft):
    with pytest.raises(ValueError, match="alpha|draft length"):
        draft_reward(CostModel(L=8, n=2, A=0.1, H=0.2), alpha, draft)
