"""Choosing the draft exit layer n (appendix A.4) from hand-made confidences and logits."""

import math

import pytest
import torch

from lightning_ssd.models.components.exit_layer import (
    ConfidenceStats,
    candidate_layers,
    choose_exit_layer,
    layer_rewards,
    mean_confidence,
    select_exit_layer,
)
from lightning_ssd.models.components.speedup_rule import exit_statistics
from tests.helpers import TOKENS, image_prefix_length, make_inputs, tiny_vlm


def test_candidates_are_the_first_half():
    assert list(candidate_layers(8)) == [1, 2, 3, 4]
    assert list(candidate_layers(5)) == [1, 2]
    assert list(candidate_layers(1)) == [1]


def test_reward_trades_confidence_against_depth():
    confidence = torch.tensor([0.50, 0.80, 0.85, 0.86])  # saturates after layer 2
    rewards = layer_rewards(confidence, 8)  # lambda = 1/8
    torch.testing.assert_close(rewards, torch.tensor([0.375, 0.55, 0.475, 0.36]))
    assert choose_exit_layer(confidence, 8) == 2
    assert choose_exit_layer(confidence, 8, lam=0.0) == 4  # free depth: the most confident layer
    assert choose_exit_layer(confidence, 8, lam=1.0) == 1  # expensive depth: the shallowest


def test_ties_go_to_the_shallower_layer():
    assert choose_exit_layer(torch.tensor([0.6, 0.7, 0.8, 0.9]), 8, lam=0.1) == 1


def test_confidence_stats_add_up_over_batches_and_give_the_paired_standard_error():
    c = torch.rand(30, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stats = ConfidenceStats.of(c[:12]) + ConfidenceStats.of(c[12:])
    assert stats.count == 30
    torch.testing.assert_close(stats.mean, c.mean(0))
    for ref in range(4):
        expected = torch.stack([(c[:, ref] - c[:, layer]).std() / 30**0.5 for layer in range(4)])
        torch.testing.assert_close(stats.diff_stderr(ref), expected)


def _noisy_confidences(gains: list[float], noise: float, samples: int = 200) -> torch.Tensor:
    """(samples, K) confidences whose means are 0.2 + cumulative `gains`, with per-sample noise on each layer."""
    g = torch.Generator().manual_seed(1)
    means = 0.2 + torch.tensor([0.0, *gains], dtype=torch.float64).cumsum(0)
    c = means + noise * torch.randn(samples, len(means), generator=g, dtype=torch.float64)
    return c - c.mean(0) + means  # exact means, so the argmax below is known


def test_one_se_rule_goes_deeper_only_for_a_gain_the_validation_split_resolves():
    L = 8  # lambda = 1/8 = 0.125; layer 4's reward is 0.004 above layer 2's
    tied = _noisy_confidences([0.3, 0.126, 0.128], noise=0.1)
    assert select_exit_layer(ConfidenceStats.of(tied), L, rule="argmax").n == 4
    assert select_exit_layer(ConfidenceStats.of(tied), L, rule="one_se").n == 2
    clear = _noisy_confidences([0.3, 0.2, 0.2], noise=0.01)  # a gain of 0.075 per layer, far above the noise
    assert select_exit_layer(ConfidenceStats.of(clear), L, rule="argmax").n == 4
    assert select_exit_layer(ConfidenceStats.of(clear), L, rule="one_se").n == 4
    with pytest.raises(ValueError, match="rule must be one of"):
        select_exit_layer(ConfidenceStats.of(clear), L, rule="median")


def test_confidence_count_must_match_the_candidates():
    with pytest.raises(ValueError, match="expected 4 confidences"):
        layer_rewards(torch.ones(3), 8)


def test_mean_confidence_on_hand_made_logits():
    V = 4
    certain = torch.full((V,), -1e4)
    certain[2] = 0.0  # softmax ~ one-hot
    uniform = torch.zeros(V)
    logits = torch.stack([torch.stack([certain, uniform, certain]), torch.stack([uniform, uniform, certain])])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])  # (B=2, T=3): masked positions must not count
    torch.testing.assert_close(mean_confidence(logits, mask), torch.tensor([(1.0 + 1 / V) / 2, 1 / V]))


def test_exit_statistics_match_the_early_exit_softmax():
    name = "tiny-blip2-opt"
    vlm = tiny_vlm(name)
    batch = make_inputs(name, [5, 3])
    labels = batch["input_ids"].clone()
    labels[:, : image_prefix_length(name) + 2] = -100
    labels[batch["attention_mask"] == 0] = -100
    layers = candidate_layers(vlm.decoder.num_layers)
    confidence, _ = exit_statistics(vlm, {**batch, "labels": labels}, layers)
    assert confidence.count == 2 and confidence.mean.shape == (len(layers),)
    prompt, targets = vlm.teacher_forced(**batch, labels=labels)
    with torch.no_grad():
        states = vlm.decoder.layer_states(prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask)
        probs = torch.softmax(vlm.decoder.head(states[1]), -1).amax(-1)  # (B, T)
    per_sample = [probs[b][targets[b] != -100].mean().item() for b in range(2)]
    assert confidence.mean[0].item() == pytest.approx(sum(per_sample) / 2, rel=1e-5)
    assert all(1.0 / TOKENS.vocab_size <= v <= 1.0 and math.isfinite(v) for v in confidence.mean.tolist())
