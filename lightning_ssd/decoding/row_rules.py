"""Acceptance for a batch whose rows carry their own generation settings (continuous batching).

Each live row has its own `RowRule`: greedy, or sampling with its own temperature, top-k and top-p, and its own seed.
`PerRowAcceptance` is an `AcceptanceRule` over the whole batch that hands every row to its rule.

A seeded row draws its randomness from generators keyed by (seed, output position, purpose), not from one stream:
what row b draws for its t-th token does not depend on how many draws other rows, or its own masked draft steps past
its budget, made before. So a seeded request gives the same tokens whatever else shares its batch (as vLLM's
per-request seeds do), and the same tokens alone. Greedy rows of a batch are judged together, as `GreedyAcceptance`
judges a whole batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import LogitsProcessorList

from lightning_ssd.decoding.acceptance import (
    AcceptanceRule,
    GreedyAcceptance,
    SpeculativeSampling,
    Verdict,
    check_generation_config,
    logits_warpers,
)

_PICK, _DRAFT, _JUDGE = 1, 2, 3
_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, position, purpose) over the generator's seeds


@dataclass(frozen=True)
class RowRule:
    """One request's token choice: greedy (`do_sample=False`), or sampling with these settings and seed."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.do_sample:
            config = GenerationConfig(do_sample=True, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
            check_generation_config(config)

    def sampler(self, position: int, purpose: int, device: torch.device) -> SpeculativeSampling:
        """A sampling rule whose draws are keyed by this row's seed, an output position and a purpose."""
        key = (self.seed * _MIX + position * 1_000_003 + purpose) % (2**63 - 1)
        warpers = _warpers(self.temperature, self.top_k, self.top_p)
        return SpeculativeSampling(warpers, torch.Generator(device=device).manual_seed(key))


@functools.lru_cache(maxsize=256)
def _warpers(temperature: float, top_k: int, top_p: float) -> LogitsProcessorList:
    """The warpers of one sampling setting, built once (a cycle asks for them at every draft step)."""
    return logits_warpers(GenerationConfig(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p))


GREEDY = RowRule()


class PerRowAcceptance(AcceptanceRule):
    """Each row of the batch chosen and judged by its own `RowRule`.

    Call `begin(rules, positions)` before each cycle (or prefill/plain step): the rules of the live rows in row order,
    and each row's output position (tokens generated so far). Draft steps within the cycle are counted by `propose`.
    """

    def __init__(self) -> None:
        self.rules: list[RowRule] = []
        self.positions: list[int] = []
        self._step = 0
        self._greedy = GreedyAcceptance()

    def begin(self, rules: Sequence[RowRule], positions: Sequence[int]) -> None:
        self.rules, self.positions, self._step = list(rules), list(positions), 0

    @property
    def samples(self) -> bool:
        return any(rule.do_sample for rule in self.rules)

    def _sampled_rows(self) -> list[int]:
        return [b for b, rule in enumerate(self.rules) if rule.do_sample]

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        tokens = logits.argmax(-1)
        for b in self._sampled_rows():
            rule = self.rules[b].sampler(self.positions[b], _PICK, logits.device)
            tokens[b] = rule.pick(logits[b : b + 1])[0]
        return tokens

    def propose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        j, self._step = self._step, self._step + 1
        tokens = logits.argmax(-1)
        if not self.samples:
            return tokens, None
        # greedy rows get a one-hot q: their judge never reads it, and sampled rows need theirs
        q = torch.nn.functional.one_hot(tokens, logits.shape[-1]).float()
        for b in self._sampled_rows():
            rule = self.rules[b].sampler(self.positions[b] + j, _DRAFT, logits.device)
            token, q_b = rule.propose(logits[b : b + 1])
            tokens[b], q[b] = token[0], q_b[0]
        return tokens, q

    def judge(
        self, drafts: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor | None, logits: torch.Tensor
    ) -> Verdict:
        verdict = self._greedy.judge(drafts, lengths, None, logits)
        accepted, following = verdict.accepted.clone(), verdict.next_tokens.clone()
        for b in self._sampled_rows():
            k = int(lengths[b])  # the row's own drafts only: its draws do not depend on the batch's widest draft
            rule = self.rules[b].sampler(self.positions[b], _JUDGE, logits.device)
            row = rule.judge(drafts[b : b + 1, :k], lengths[b : b + 1], None if q is None else q[b : b + 1, :k],
                             logits[b : b + 1, : k + 1])
            accepted[b], following[b] = row.accepted[0], row.next_tokens[0]
        return Verdict(accepted, following)

    def confidence(self, logits: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        probs = torch.softmax(logits.float(), -1)
        if q is not None:
            sampled = torch.tensor([r.do_sample for r in self.rules], device=logits.device)
            probs = torch.where(sampled[:, None], q, probs)
        return probs.max(-1).values
