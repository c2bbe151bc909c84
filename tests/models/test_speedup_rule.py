import pytest
import torch

from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.models.components.speedup_rule import choose_by_speedup, exit_statistics
from tests.helpers import image_prefix_length, make_inputs, make_redundant_, tiny_vlm


def test_choice_is_the_cost_models_argmax_computed_by_hand():
    layers = range(1, 4)
    agreement = torch.tensor([0.2, 0.7, 0.75])
    choice = choose_by_speedup(agreement, layers, num_layers=8, head_cost=0.5, imitation_cost=0.1, d=4)
    by_hand = [CostModel(8, n, 0.1, 0.5).predicted_speedup(a, [4])
               for n, a in zip(layers, [0.2, 0.7, 0.75], strict=True)]
    assert choice.predicted.tolist() == pytest.approx(by_hand)
    assert choice.n == 2 == 1 + max(range(3), key=lambda i: by_hand[i])  # deeper layer 3 agrees more, costs more


def test_full_agreement_prefers_the_shallowest_layer():
    choice = choose_by_speedup(torch.ones(4), range(1, 5), num_layers=8, head_cost=0.2, imitation_cost=0.0, d=6)
    assert choice.n == 1


def test_agreement_is_one_where_the_deep_layers_write_nothing():
    vlm = make_redundant_(tiny_vlm("tiny-llava"), 2)
    batch = make_inputs("tiny-llava", [5, 5])
    labels = batch["input_ids"].clone()
    labels[:, : image_prefix_length("tiny-llava") + 2] = -100
    _, agreement = exit_statistics(vlm, {**batch, "labels": labels}, range(1, 4))
    assert agreement.count == 2
    assert agreement.mean[1:].tolist() == [1.0, 1.0]  # x_2 = x_3 = x_L: layers 2 and 3 are the full model's exit
    assert agreement.mean[0] < 1  # layer 1 is not (a random tiny model)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="d >= 1"):
        choose_by_speedup(torch.ones(2), range(1, 3), 4, 0.1, 0.0, d=0)
    with pytest.raises(ValueError, match="expected 2 agreements"):
        choose_by_speedup(torch.ones(3), range(1, 3), 4, 0.1, 0.0, d=4)
