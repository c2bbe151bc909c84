"""The imitation network on a decoding state: what the draft model runs between layer n and the LM head.

An imitation network with an attention layer keeps keys/values of every committed slot of every row. That state
belongs to the drafter that runs the network, not to the decoding state; the decoding state lays it out (a
`ImitationState` cropped and compacted with `BatchState`'s slots, a `SlotImitationState` on `SlotState`'s rows)
and makes it follow its row operations (admission, eviction, cropping, compaction) through `follow`.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn


class ImitationRunner:
    """Runs `imitation` on the states x_n of a decoding state, with one attention state per decoding state.

    Args:
        imitation: the imitation network (None: the plain early exit, x_I = x_n).
    """

    def __init__(self, imitation: nn.Module | None) -> None:
        self.imitation = imitation
        self._states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _attention_state(self, state):
        if state not in self._states:
            self._states[state] = state.attention_state(self.imitation)
        return self._states[state]

    def imitate(self, state, x_n: torch.Tensor, offset: int | None) -> torch.Tensor:
        """x_I of states x_n `offset` slots past the committed ones (None: a prompt being prefilled)."""
        if self.imitation is None:
            return x_n
        attention = self._attention_state(state)
        mask = state.attend(attention, x_n.shape[1], offset) if attention is not None else None
        return self.imitation(x_n, attention, mask)

    def observe(self, state, x_n: torch.Tensor, offset: int | None) -> None:
        """Like `imitate`, for states whose draft is not needed: keeps the attention state complete."""
        if self.imitation is None:
            return
        attention = self._attention_state(state)
        if attention is not None:
            self.imitation.observe(x_n, attention, state.attend(attention, x_n.shape[1], offset))
