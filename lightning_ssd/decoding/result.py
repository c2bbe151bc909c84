"""Typed results of a decoding run, with the acceptance statistics derived from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Cycle:
    """One draft-verify cycle (or one plain decoding step, with drafted = 0).

    Attributes:
        drafted: draft tokens proposed.
        accepted: leading draft tokens the full model agreed with (0..drafted).
        emitted: tokens appended to the output (accepted + the full model's token, fewer at EOS / the length cap).
        deep_passes: passes through layers [n, L) (1 per cycle for SSD and plain greedy, 0 for draft-only).
        draft_time_s: seconds spent drafting (shallow layers + imitation + head).
        verify_time_s: seconds spent in the deep verification pass and acceptance.
        rejected: the first draft token the full model rejected (None when every draft was accepted).

    In a batch, a step's wall time is shared evenly by the rows decoded in it, so the rows' times add up to the
    batch's wall time.
    """

    drafted: int
    accepted: int
    emitted: int
    deep_passes: int
    draft_time_s: float
    verify_time_s: float
    rejected: int | None = None


@dataclass(frozen=True)
class SequenceResult:
    """Generated tokens of one sequence (prompt excluded) and how they were produced."""

    tokens: tuple[int, ...]
    cycles: tuple[Cycle, ...]
    prefill_time_s: float
    decode_time_s: float

    def acceptance_record(self) -> dict[str, float | list[int]]:
        """This sequence's tau and the drafts accepted in each cycle, as written beside its text."""
        return {"tau": GenerationResult((self,)).mean_accepted_length, "accepted": [c.accepted for c in self.cycles]}


@dataclass(frozen=True)
class GenerationResult:
    """A batch of sequence results plus aggregate statistics.

    tau (mean accepted length) counts the full model's own token, as in the speculative decoding literature:
    tau = emitted tokens / cycles. alpha is the per-position acceptance probability: accepted draft tokens over the
    draft tokens that were actually judged (those up to and including the first rejection), the quantity the
    i.i.d. model (1 - alpha^(d+1)) / (1 - alpha) assumes.
    """

    sequences: tuple[SequenceResult, ...]

    @property
    def tokens(self) -> list[list[int]]:
        return [list(s.tokens) for s in self.sequences]

    def padded(self, pad_token_id: int) -> torch.Tensor:
        """(B, max_len) tokens, right-padded like transformers' generate pads finished sequences."""
        width = max((len(s.tokens) for s in self.sequences), default=0)
        out = torch.full((len(self.sequences), width), pad_token_id, dtype=torch.long)
        for row, seq in enumerate(self.sequences):
            out[row, : len(seq.tokens)] = torch.tensor(seq.tokens, dtype=torch.long)
        return out

    @property
    def cycles(self) -> list[Cycle]:
        return [c for s in self.sequences for c in s.cycles]

    @property
    def num_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sequences)

    @property
    def mean_accepted_length(self) -> float:
        """tau: tokens emitted per verification pass, over every verified cycle (also those that drafted nothing,
        e.g. under a confidence threshold); NaN for plain decoding, where no cycle drafted."""
        cycles = [c for c in self.cycles if c.deep_passes]
        if not any(c.drafted for c in cycles):
            return float("nan")
        return sum(c.emitted for c in cycles) / len(cycles)

    @property
    def acceptance_rate(self) -> float:
        judged = sum(min(c.accepted + 1, c.drafted) for c in self.cycles if c.drafted)
        accepted = sum(c.accepted for c in self.cycles)
        return accepted / judged if judged else float("nan")

    @property
    def acceptance_by_position(self) -> list[float]:
        """P(draft position i accepted | positions < i accepted), i = 0..max drafted - 1."""
        width = max((c.drafted for c in self.cycles), default=0)
        reached, accepted = [0] * width, [0] * width
        for c in self.cycles:
            for i in range(min(c.accepted + 1, c.drafted)):
                reached[i] += 1
                accepted[i] += i < c.accepted
        return [a / r if r else float("nan") for a, r in zip(accepted, reached, strict=True)]

    @property
    def drafted(self) -> int:
        return sum(c.drafted for c in self.cycles)

    @property
    def deep_passes(self) -> int:
        return sum(c.deep_passes for c in self.cycles)

    @property
    def draft_time_s(self) -> float:
        return sum(c.draft_time_s for c in self.cycles)

    @property
    def verify_time_s(self) -> float:
        return sum(c.verify_time_s for c in self.cycles)

    @property
    def decode_time_s(self) -> float:
        return sum(s.decode_time_s for s in self.sequences)

    @property
    def prefill_time_s(self) -> float:
        return sum(s.prefill_time_s for s in self.sequences)
