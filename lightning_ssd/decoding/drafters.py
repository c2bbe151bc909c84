"""Drafters: what proposes the tokens a speculative cycle verifies.

A drafter runs on the batch's decoding state and returns a typed `Draft`: up to D tokens per row, their draft
distributions when the acceptance rule samples, and the states at `layer` from which the verification pass runs
layers [layer, L) (the shallow layers' work is never repeated). A new drafting method (another exit, a skipped-layer
draft, ...) is a new class here; the decoding loop stays as it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.acceptance import AcceptanceRule
from lightning_ssd.decoding.imitation import ImitationRunner
from lightning_ssd.decoding.spec import DraftSpec


@dataclass(frozen=True)
class Draft:
    """One cycle's proposal for every live row.

    Attributes:
        tokens: (B, D) draft tokens; only the first lengths[b] of row b are proposed.
        lengths: (B,) tokens proposed per row, 0..D.
        q: (B, D, V) draft distributions the tokens were sampled from, or None for greedy drafts.
        states: (B, D + 1, H) states at `layer` of the cycle's first token and of each draft token.
        layer: the layer those states sit at; verification runs layers [layer, L) over them.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    q: torch.Tensor | None
    states: torch.Tensor
    layer: int


class Drafter(ABC):
    """Proposes draft tokens on a decoding state (`BatchState` for a batch, `SlotState` for continuous batching).

    Hooks, in the order a decoder calls them: `observe_prompt` once per admitted prompt, then per cycle `propose`
    and, after verification, `feedback`. A drafter reads each live row's tokens from `state.histories` where the
    state keeps them (`SlotState` does).

    Attributes:
        layer: the layer verification starts from: the prompt is prefilled through [0, layer) and handed to
            `observe_prompt`, and verification runs [layer, L). For SSD's shallow draft it is the exit layer n; for
            Draft & Verify's skipped-layer draft, the first skipped layer; for prompt lookup, 0.
        imitation: the draft's imitation network, or None.
    """

    layer: int
    imitation: nn.Module | None = None

    @abstractmethod
    def observe_prompt(self, state, x: torch.Tensor) -> None:
        """Sees the prompt's states at `layer` (B, T, D) before decoding starts."""

    @abstractmethod
    def propose(self, state, last: torch.Tensor, budget: torch.Tensor, rule: AcceptanceRule) -> Draft:
        """Drafts up to budget[b] tokens after each row's last token `last` (B,)."""

    def feedback(self, state, draft: Draft, accepted: torch.Tensor) -> None:  # noqa: B027 (optional hook)
        """Sees how many of each row's drafts (B,) verification accepted; the state has already committed them."""


class AutoregressiveDrafter(Drafter):
    """A draft model run token by token from the exit layer's states: the loop shared by SSD's shallow draft and
    Draft & Verify's skipped-layer draft, with hooks for the draft step and for what ends a row's draft.

    Each step j feeds the state x of the row's j-th token of the cycle (its last token, then its drafts) through
    `draft_logits`, proposes a token by the rule, and runs that token through layers [0, layer) for the next
    step and for verification. A row stops at a drafted EOS, at its budget, and below its confidence threshold
    (`thresholds`): with `propose_first_unsure` the unconfident token is still proposed (Draft & Verify),
    otherwise it is not (the paper's SSD). `finish` runs once the loop ends.
    """

    propose_first_unsure: bool = False
    eos: torch.Tensor

    @abstractmethod
    def draft_logits(self, state, x: torch.Tensor, offset: int) -> torch.Tensor:
        """(B, V) draft logits from the states x (B, 1, H) at `layer` of the tokens `offset` slots past the
        committed ones."""

    def thresholds(self, state) -> torch.Tensor | float | None:
        """Each row's confidence threshold for this cycle, (B,) or one for all; None: draft the whole budget."""
        return None

    def finish(self, state, x: torch.Tensor, offset: int, fed: bool) -> None:
        """After the loop: x (B, 1, H) is the last state computed, at `offset`; `fed` whether a draft step read it."""

    def propose(self, state, last: torch.Tensor, budget: torch.Tensor, rule: AcceptanceRule) -> Draft:
        if self.eos.device != last.device:
            self.eos = self.eos.to(last.device)  # once, not every cycle
        threshold = self.thresholds(state)
        # Whether every row has stopped (EOS drafted, budget spent) is free to ask on CPU; on GPU it is a sync, so
        # there the loop runs to D (rows that stopped draft on, masked) unless a confidence threshold asks anyway.
        check_stop = last.device.type == "cpu" or threshold is not None
        D = int(budget.max())
        reach = budget.unsqueeze(0) > torch.arange(D + 1, device=last.device).unsqueeze(1)  # (D + 1, B)
        x = state.token_states(last, 0, self.layer)  # (B, 1, H)
        states, tokens, qs, sure = [x], [], [], []
        going = torch.ones_like(reach[0])  # no EOS drafted yet, and confident so far
        fed, offset = False, 0
        for j in range(D):
            logits = self.draft_logits(state, x, j)
            token, q = rule.propose(logits)
            fed = True
            confident = None
            if threshold is not None:
                confident = rule.confidence(logits, q) >= threshold
                sure.append(confident)
                if not self.propose_first_unsure:
                    going = going & confident
                    if not bool((going & reach[j]).any()):
                        break  # this token is proposed by no row; its state is not needed
            tokens.append(token)
            qs.append(q)
            x = state.token_states(token, j + 1, self.layer)
            states.append(x)
            fed, offset = False, j + 1
            if j + 1 == D:
                break
            going = going & torch.isin(token, self.eos, invert=True)
            if confident is not None and self.propose_first_unsure:
                going = going & confident
            if check_stop and not bool((going & reach[j + 1]).any()):
                break
        self.finish(state, x, offset, fed)
        sure = sure[: len(tokens)]
        return Draft(
            tokens=torch.stack(tokens, 1) if tokens else last.new_zeros(last.shape[0], 0),
            lengths=draft_lengths(tokens, sure, reach, self.eos, self.propose_first_unsure),
            q=torch.stack(qs, 1) if tokens and qs[0] is not None else None,
            states=torch.cat(states, 1),
            layer=self.layer,
        )


class ShallowDrafter(AutoregressiveDrafter):
    """The paper's draft model: layers [0, n) + imitation network, read out through the final norm and LM head.

    Args:
        decoder: the backbone's split decoder.
        spec: the draft: n, the imitation network (None: the plain early exit, layer n -> norm -> head) and the
            confidence threshold below which a row stops drafting; checked against `decoder` and kept as given.
        eos_token_id: tokens after which a row stops drafting.
    """

    def __init__(self, decoder: SplitDecoder, spec: DraftSpec, eos_token_id: Sequence[int] = ()) -> None:
        self.spec = spec.check(decoder)
        self.decoder, self.layer, self.imitation = decoder, spec.n, spec.imitation
        self.runner = ImitationRunner(spec.imitation)  # owns the network's attention state per decoding state
        self.eos = torch.tensor(list(eos_token_id), dtype=torch.long)
        self.confidence_threshold = spec.confidence_threshold

    def observe_prompt(self, state, x: torch.Tensor) -> None:
        self.runner.observe(state, x, None)

    def draft_logits(self, state, x: torch.Tensor, offset: int) -> torch.Tensor:
        return self.decoder.head(self.runner.imitate(state, x, offset))[:, -1]

    def thresholds(self, state) -> float | None:
        return self.confidence_threshold

    def finish(self, state, x: torch.Tensor, offset: int, fed: bool) -> None:
        if not fed:  # the imitation's attention state must hold every committed slot
            self.runner.observe(state, x, offset)


def draft_lengths(tokens: list[torch.Tensor], sure: list[torch.Tensor], reach: torch.Tensor, eos: torch.Tensor,
                  propose_first_unsure: bool = False) -> torch.Tensor:
    """(B,) drafts each row proposed: within its budget (`reach`, (D + 1, B)), up to its first EOS, and while
    confident (`sure`: per step, (B,) bool; empty without a threshold). With `propose_first_unsure` the first
    unconfident draft is proposed too (Draft & Verify), else it is not (the paper's SSD)."""
    if not tokens:
        return torch.zeros(reach.shape[1], dtype=torch.long, device=reach.device)
    drafts = torch.stack(tokens, 1)  # (B, D')
    real = reach[: drafts.shape[1]].T.clone()
    is_eos = torch.isin(drafts, eos).long()
    real &= (is_eos.cumsum(-1) - is_eos) == 0  # no EOS before the position
    if sure:
        confident = torch.stack(sure, 1).long().cumprod(-1)  # every draft up to j was confident
        if propose_first_unsure:
            confident = torch.cat([torch.ones_like(confident[:, :1]), confident], 1)[:, : drafts.shape[1]]
        real &= confident.bool()
    return real.long().cumprod(-1).sum(-1)
