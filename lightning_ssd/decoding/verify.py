"""Where a sequence stops: at its first end token, or when its token budget is spent."""

from __future__ import annotations

from collections.abc import Sequence


def stop_index(tokens: Sequence[int], eos_token_ids: Sequence[int], budget: int) -> int:
    """How many of `tokens` to emit: up to and including the first EOS, and at most `budget`."""
    for i, token in enumerate(tokens[:budget]):
        if token in eos_token_ids:
            return i + 1
    return min(len(tokens), budget)
