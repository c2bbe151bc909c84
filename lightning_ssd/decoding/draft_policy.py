"""Per-row draft-length policies: each live row's d for the next cycle, from that row's own history.

A policy sees one row's `RowAcceptance` (tokens generated, smoothed accepted and rejected drafts) and returns d.
`ScheduledDraft` follows a schedule of the tokens generated (a fixed d, or the paper's eq. 5), as batch decoding
does. `AdaptiveDraft` reads the row's live acceptance rate alpha and picks the d that the cost model
(`decoding/cost.py`) predicts to be fastest for it: argmax_d tokens(alpha, d) / cost(d), with d = 0 (plain decoding
through the split) when no draft pays for itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lightning_ssd.decoding.checks import parse_draft
from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.decoding.schedule import DraftLength, draft_length


@dataclass
class RowAcceptance:
    """One row's acceptance so far, smoothed so that it follows the row's recent cycles.

    Attributes:
        generated: tokens the row has generated.
        accepted: decayed count of accepted drafts.
        judged: decayed count of judged drafts (accepted ones plus the first rejected one of each cycle).
    """

    generated: int = 0
    accepted: float = 0.0
    judged: float = 0.0

    def record(self, drafted: int, accepted: int, emitted: int, decay: float = 0.9) -> None:
        """Adds one cycle: `drafted` proposed, `accepted` of them kept, `emitted` tokens appended."""
        self.generated += emitted
        if drafted:
            self.accepted = decay * self.accepted + accepted
            self.judged = decay * self.judged + min(accepted + 1, drafted)

    def alpha(self, prior: float, strength: float) -> float:
        """Acceptance probability per position: the smoothed rate, pulled toward `prior` by `strength` drafts."""
        return (self.accepted + prior * strength) / (self.judged + strength)


class DraftPolicy(Protocol):
    max_d: int  # the largest d it returns: a cycle writes up to max_d + 1 slots past a row's committed ones

    def __call__(self, row: RowAcceptance) -> int: ...


@dataclass(frozen=True)
class ScheduledDraft:
    """d from a schedule of the tokens generated so far: fixed d, or eq. 5 ("dynamic")."""

    schedule: DraftLength

    def __call__(self, row: RowAcceptance) -> int:
        return self.schedule(row.generated)

    @property
    def max_d(self) -> int:
        """The largest d the schedule ever asks for."""
        d = getattr(self.schedule, "d", None)
        return d if d is not None else self.schedule.d0 + self.schedule.span


@dataclass(frozen=True)
class AdaptiveDraft:
    """Each row's d maximises the cost model's predicted speedup at the row's own acceptance rate.

    Args:
        cost: the backbone's cost model at the draft's exit layer (`measure_cost_model`).
        max_d: the largest d considered.
        prior: the acceptance rate a row starts from, before any of its drafts is judged.
        strength: how many judged drafts the prior weighs as.
    """

    cost: CostModel
    max_d: int = 12
    prior: float = 0.8
    strength: float = 2.0

    def __post_init__(self) -> None:
        if self.max_d < 1:
            raise ValueError(f"adaptive draft length needs max_d >= 1, got {self.max_d}")
        if not 0.0 <= self.prior <= 1.0 or self.strength <= 0:
            raise ValueError(f"adaptive draft length needs prior in [0, 1] and strength > 0, got {self.prior}, "
                             f"{self.strength}")

    def best(self, alpha: float) -> int:
        """The d with the highest predicted speedup at acceptance `alpha` (0: none beats plain decoding)."""
        speedups = [self.cost.predicted_speedup(alpha, [d]) for d in range(1, self.max_d + 1)]
        best = max(range(len(speedups)), key=speedups.__getitem__)
        return best + 1 if speedups[best] > 1.0 else 0

    def __call__(self, row: RowAcceptance) -> int:
        return self.best(row.alpha(self.prior, self.strength))


def draft_policy(spec: int | str | DraftLength | DraftPolicy, cost: CostModel | None = None) -> DraftPolicy:
    """Parses a user setting: d, "dynamic" (eq. 5), "adaptive" (needs the cost model), or a policy object."""
    spec = parse_draft(spec)
    if spec == "adaptive":
        if cost is None:
            raise ValueError("draft 'adaptive' picks each row's d through the cost model: give the cost model")
        return AdaptiveDraft(cost)
    if isinstance(spec, AdaptiveDraft | ScheduledDraft):
        return spec
    return ScheduledDraft(draft_length(spec))
