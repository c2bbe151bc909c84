import pytest
import torch

from lightning_ssd.decoding.engine import _argmax
from lightning_ssd.decoding.verify import accepted_prefix_length, stop_index


def _logits(argmaxes, vocab=6):
    """Hand-written logits (1, T, V) whose argmax per position is given."""
    logits = torch.zeros(1, len(argmaxes), vocab)
    for t, token in enumerate(argmaxes):
        logits[0, t, token] = 5.0
    return logits


@pytest.mark.parametrize(
    ("draft", "target", "k"),
    [
        ([1, 2, 3], [1, 2, 3, 4], 3),  # all accepted, 4 is the bonus token
        ([1, 2, 3], [1, 5, 3, 4], 1),  # rejected at position 1, 5 is the correction
        ([1, 2, 3], [0, 2, 3, 4], 0),  # first draft rejected
        ([], [4], 0),  # nothing drafted: the full model's token only
    ],
)
def test_accepted_prefix_length(draft, target, k):
    target = _argmax(_logits(target))
    assert accepted_prefix_length(draft, target) == k
    emitted = draft[:k] + [target[k]]
    assert len(emitted) == k + 1


def test_later_agreement_after_a_rejection_is_not_accepted():
    assert accepted_prefix_length([1, 2, 3], [1, 9, 3, 4]) == 1


def test_target_must_have_one_more_token_than_draft():
    with pytest.raises(ValueError, match="d \\+ 1"):
        accepted_prefix_length([1, 2], [1, 2])


@pytest.mark.parametrize(
    ("tokens", "eos", "budget", "expected"),
    [([5, 6, 2, 7], [2], 10, 3), ([5, 6, 7], [2], 2, 2), ([5, 2, 2], [2, 9], 1, 1), ([9, 6], [2, 9], 5, 1)],
)
def test_stop_index(tokens, eos, budget, expected):
    assert stop_index(tokens, eos, budget) == expected
