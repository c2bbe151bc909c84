import pytest

from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import tiny_vlm


def test_cost_model_by_hand():
    m = CostModel(L=16, n=4, A=0.2, H=0.1)
    assert m.cycle_cost(4) == pytest.approx(5 * 4 + 4 * 0.3 + 12 + 0.1)
    assert m.tokens_per_cycle(1.0, 4) == 5
    assert m.tokens_per_cycle(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)
    assert m.predicted_speedup(1.0, [4]) == pytest.approx(5 * 16.1 / m.cycle_cost(4))
    assert m.ceiling == pytest.approx(16.1 / 4.3)
    assert m.predicted_speedup(1.0, [10_000]) == pytest.approx(m.ceiling, rel=1e-3)


@pytest.mark.parametrize("name", ["tiny-llava", "tiny-blip2-t5"])
def test_measured_costs_match_parameter_counts(name):
    vlm = tiny_vlm(name)
    D, V = vlm.decoder.hidden_size, vlm.decoder.vocab_size
    net = ImitationNetwork(D)  # two D x D linear layers
    model, report = measure_cost_model(vlm.decoder, 1, net, context=8)
    assert report["imitation_flops_per_token"] == pytest.approx(2 * 2 * D * D, rel=0.05)
    assert report["head_flops_per_token"] == pytest.approx(2 * D * V, rel=0.05)
    assert 0 < model.A < 1 and model.H > 0
    assert report["imitation_params"] == 2 * (D * D + D) + 2 * D
