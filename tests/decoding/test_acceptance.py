"""Acceptance rules on hand-written logits: exact accept / reject cases, batched over rows."""

import pytest
import torch
from transformers import GenerationConfig

from lightning_ssd.decoding.acceptance import (
    GreedyAcceptance,
    SpeculativeSampling,
    acceptance_rule,
    check_generation_config,
    logits_warpers,
    stop_index,
)


def _logits(argmaxes, vocab=6):
    """Hand-written logits (B, T, V) whose argmax per row and position is given."""
    logits = torch.zeros(len(argmaxes), len(argmaxes[0]), vocab)
    for b, row in enumerate(argmaxes):
        for t, token in enumerate(row):
            logits[b, t, token] = 5.0
    return logits


def test_greedy_rule_judges_every_row_on_its_own():
    drafts = torch.tensor([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [0, 0, 0]])
    lengths = torch.tensor([3, 3, 3, 1, 0])
    target = _logits([[1, 2, 3, 4],   # all accepted: 4 is the bonus token
                      [1, 5, 3, 4],   # rejected at 1: 5 is the correction; the later agreement does not count
                      [0, 2, 3, 4],   # first draft rejected
                      [1, 2, 3, 4],   # only one draft proposed: accepted, then the bonus after it
                      [4, 1, 1, 1]])  # nothing proposed: the full model's token only
    verdict = GreedyAcceptance().judge(drafts, lengths, None, target)
    assert verdict.accepted.tolist() == [3, 1, 0, 1, 0]
    assert verdict.next_tokens.tolist() == [4, 5, 0, 2, 4]


def test_greedy_rule_with_no_drafts_at_all():
    verdict = GreedyAcceptance().judge(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, dtype=torch.long), None,
                                       _logits([[3], [5]]))
    assert verdict.accepted.tolist() == [0, 0] and verdict.next_tokens.tolist() == [3, 5]


def _probs_to_logits(probs):
    return torch.tensor(probs).clamp(min=1e-30).log()


def test_sampling_accepts_a_draft_the_full_model_agrees_with():
    rule = SpeculativeSampling(logits_warpers(GenerationConfig(do_sample=True, top_k=0)),
                               torch.Generator().manual_seed(0))
    # p = q: every draft is accepted whatever the uniform draw, and the bonus token comes from p at position 2
    q = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]] * 64)
    p = _probs_to_logits([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]] * 64)
    verdict = rule.judge(torch.tensor([[1, 2]] * 64), torch.tensor([2] * 64), q, p)
    assert verdict.accepted.tolist() == [2] * 64 and verdict.next_tokens.tolist() == [0] * 64


def test_sampling_rejects_a_token_the_full_model_never_samples_and_resamples_from_the_residual():
    rule = SpeculativeSampling(logits_warpers(GenerationConfig(do_sample=True, top_k=0)),
                               torch.Generator().manual_seed(0))
    # the draft put its mass on token 1, which p gives 0: always rejected; norm(max(0, p - q)) = p here
    q = torch.tensor([[[0.0, 1.0, 0.0]]] * 2000)
    p = _probs_to_logits([[[0.25, 0.0, 0.75], [1.0, 0.0, 0.0]]] * 2000)
    verdict = rule.judge(torch.tensor([[1]] * 2000), torch.tensor([1] * 2000), q, p)
    assert verdict.accepted.tolist() == [0] * 2000
    tokens = verdict.next_tokens
    assert set(tokens.tolist()) == {0, 2}
    assert (tokens == 0).float().mean().item() == pytest.approx(0.25, abs=0.04)


def test_sampling_residual_excludes_what_the_draft_already_covered():
    rule = SpeculativeSampling(logits_warpers(GenerationConfig(do_sample=True, top_k=0)),
                               torch.Generator().manual_seed(0))
    # p = (0.5, 0.5, 0), q = (0.9, 0.1, 0): a draft of token 0 is accepted with p/q = 5/9; after a rejection the
    # residual max(0, p - q) = (0, 0.4, 0) leaves token 1 only
    N = 4000
    q = torch.tensor([[[0.9, 0.1, 0.0]]] * N)
    p = _probs_to_logits([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]] * N)
    verdict = rule.judge(torch.zeros(N, 1, dtype=torch.long), torch.ones(N, dtype=torch.long), q, p)
    accepted = verdict.accepted.bool()
    assert accepted.float().mean().item() == pytest.approx(5 / 9, abs=0.03)
    assert verdict.next_tokens[~accepted].tolist() == [1] * int((~accepted).sum())
    assert verdict.next_tokens[accepted].tolist() == [2] * int(accepted.sum())  # the bonus, from p at position 1


@pytest.mark.parametrize(
    ("tokens", "eos", "budget", "expected"),
    [([5, 6, 2, 7], [2], 10, 3), ([5, 6, 7], [2], 2, 2), ([5, 2, 2], [2, 9], 1, 1), ([9, 6], [2, 9], 5, 1)],
)
def test_stop_index(tokens, eos, budget, expected):
    assert stop_index(tokens, eos, budget) == expected


def test_rule_follows_the_generation_config():
    assert isinstance(acceptance_rule(GenerationConfig()), GreedyAcceptance)
    rule = acceptance_rule(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9))
    assert isinstance(rule, SpeculativeSampling)
    # transformers' own order, with its default top_k=50 where the config leaves top_k unset
    assert [type(w).__name__ for w in rule.warpers] == ["TemperatureLogitsWarper", "TopKLogitsWarper",
                                                        "TopPLogitsWarper"]
    assert rule.warpers[1].top_k == 50


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"do_sample": True, "temperature": 0.0}, "temperature=0.0 with do_sample=True"),
        ({"do_sample": True, "temperature": -1.0}, "temperature must be > 0"),
        ({"do_sample": True, "top_p": 0.0}, r"top_p=0.0: top_p must be in \(0, 1\]"),
        ({"do_sample": True, "top_p": 1.5}, "top_p must be in"),
        ({"do_sample": True, "top_k": -1}, "top_k=-1: top_k must be >= 0"),
        ({"num_beams": 2}, "num_beams=2: beam search is not supported"),
        ({"repetition_penalty": 1.3}, "repetition_penalty=1.3 is not supported"),
    ],
)
def test_impossible_settings_are_refused_by_name(settings, message):
    config = GenerationConfig()
    for key, value in settings.items():
        setattr(config, key, value)  # set after construction: GenerationConfig's own checks would warn instead
    with pytest.raises(ValueError, match=message):
        check_generation_config(config)
