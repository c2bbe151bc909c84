"""Greedy verification: keep the longest prefix of the draft the full model agrees with, plus its own token."""

from __future__ import annotations

from collections.abc import Sequence


def accepted_prefix_length(draft: Sequence[int], target: Sequence[int]) -> int:
    """Number k of leading draft tokens equal to the full model's greedy tokens.

    `target[i]` is argmax p_L after the context and draft[:i]; len(target) == len(draft) + 1, so target[k] is the
    correction (k < d) or the bonus token (k == d).
    """
    if len(target) != len(draft) + 1:
        raise ValueError(f"verification needs d + 1 target tokens for d drafts, got {len(target)} for {len(draft)}")
    k = 0
    while k < len(draft) and draft[k] == target[k]:
        k += 1
    return k


def stop_index(tokens: Sequence[int], eos_token_ids: Sequence[int], budget: int) -> int:
    """How many of `tokens` to emit: up to and including the first EOS, and at most `budget`."""
    for i, token in enumerate(tokens[:budget]):
        if token in eos_token_ids:
            return i + 1
    return min(len(tokens), budget)
