"""Draft-length policies: each live row's d for the next cycle, from the rows' own acceptance.

A policy sees every live row's `RowAcceptance` (tokens generated, smoothed accepted and rejected drafts) and the most
drafts each row can still use, and returns each row's d. `ScheduledDraft` follows a schedule of the tokens generated
(a fixed d, or the paper's eq. 5), as batch decoding does. `AdaptiveDraft` reads each row's live acceptance rate and
picks the d the cost of a cycle pays best for: argmax_d tokens(alpha, d) / cost(d), d = 0 (plain decoding through the
split) included.

Why one d for a batch. A cycle's draft loop runs until its longest row's d, over every row, and verification pads
every row to the longest draft. So giving a poorly accepted row a shorter d saves almost nothing, while giving it the
batch's d costs nothing extra: the batch's d is chosen once, from the sum of every row's expected tokens, and each
row drafts it (up to its own room). At batch 1 this is the row's own best d.

Why measured costs. At small widths a step's Python and dispatch overhead outweighs its FLOPs, so the FLOP cost model
(`decoding/cost.py`) undervalues long drafts; and a batch's verification pass widens with d on a CPU, which the FLOP
model (weight-bound) does not count. After each cycle the engine reports its timing (`observe`), and the policy prices
a cycle with d drafts as fixed + per_token * (d + 1), fitted to the recent cycles at that number of rows. Until it has
measured, it prices cycles by the FLOP model.

Sampled rows keep a d of their own. A sampled token depends on where the cycles start, so a seeded sampled row's d
must not depend on its companions or on timings: it gets the d the FLOP model picks at its own acceptance, and its
tokens stay those of the request alone (`row_rules.py`). Greedy rows' tokens do not depend on d at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
        sampled: the row samples its tokens, so its d must depend on nothing but its own history.
    """

    generated: int = 0
    accepted: float = 0.0
    judged: float = 0.0
    sampled: bool = False

    def record(self, drafted: int, accepted: int, emitted: int, decay: float = 0.9) -> None:
        """Adds one cycle: `drafted` proposed, `accepted` of them kept, `emitted` tokens appended."""
        self.generated += emitted
        if drafted:
            self.accepted = decay * self.accepted + accepted
            self.judged = decay * self.judged + min(accepted + 1, drafted)

    def alpha(self, prior: float, strength: float) -> float:
        """Acceptance probability per position: the smoothed rate, pulled toward `prior` by `strength` drafts."""
        return (self.accepted + prior * strength) / (self.judged + strength)


@dataclass(frozen=True)
class CycleTiming:
    """What one cycle cost: `steps` draft steps (its longest row's d) over `rows` rows, in `draft_s` seconds of
    drafting and `rest_s` of verification, acceptance and bookkeeping."""

    rows: int
    steps: int
    draft_s: float
    rest_s: float


class DraftPolicy(Protocol):
    max_d: int  # the largest d it returns: a cycle writes up to max_d + 1 slots past a row's committed ones

    def choose(self, rows: Sequence[RowAcceptance], room: Sequence[int]) -> list[int]:
        """Each row's d for the next cycle; `room[b]`: the most drafts row b can still use (its budget left - 1)."""
        ...

    def observe(self, timing: CycleTiming) -> None:
        """Sees what the cycle just run cost."""
        ...


@dataclass(frozen=True)
class ScheduledDraft:
    """d from a schedule of the tokens generated so far: fixed d, or eq. 5 ("dynamic")."""

    schedule: DraftLength

    def choose(self, rows: Sequence[RowAcceptance], room: Sequence[int]) -> list[int]:
        return [min(self.schedule(row.generated), r) for row, r in zip(rows, room, strict=True)]

    def observe(self, timing: CycleTiming) -> None:
        pass

    @property
    def max_d(self) -> int:
        """The largest d the schedule ever asks for."""
        d = getattr(self.schedule, "d", None)
        return d if d is not None else self.schedule.d0 + self.schedule.span


@dataclass
class _CycleFit:
    """A cycle's seconds against the tokens per row it drafts and verifies, k = steps + 1, at one number of rows:
    T(k) = fixed + per_token * k, fitted by least squares over the recent cycles (older ones decay). Verification
    widens with k too, which a batch on a CPU feels; where k has barely varied yet, per_token is the drafting time
    per step alone."""

    weight: float = 0.0
    k: float = 0.0
    t: float = 0.0
    kk: float = 0.0
    kt: float = 0.0
    draft: float = 0.0

    def add(self, timing: CycleTiming, decay: float) -> None:
        k, t = timing.steps + 1, timing.draft_s + timing.rest_s
        self.weight, self.k, self.t = decay * self.weight + 1, decay * self.k + k, decay * self.t + t
        self.kk, self.kt = decay * self.kk + k * k, decay * self.kt + k * t
        self.draft = decay * self.draft + timing.draft_s

    def prices(self) -> tuple[float, float]:
        """(seconds per drafted token, seconds per cycle besides)."""
        mean_k, mean_t = self.k / self.weight, self.t / self.weight
        spread = self.kk / self.weight - mean_k**2
        per_token = ((self.kt / self.weight - mean_k * mean_t) / spread if spread > 0.25 else 0.0)
        per_token = max(per_token, self.draft / self.k)  # drafting alone costs this much per step
        return per_token, max(mean_t - per_token * mean_k, 0.0)


@dataclass
class AdaptiveDraft:
    """The d the cycle's cost pays best for, at each row's own acceptance rate (see the module docstring).

    Args:
        cost: the backbone's FLOP cost model at the draft's exit layer (`measure_cost_model`): the price of a
            cycle until one is measured, and always for sampled rows.
        max_d: the largest d considered.
        prior: the acceptance rate a row starts from, before any of its drafts is judged.
        strength: how many judged drafts the prior weighs as.
        measured: price cycles by the seconds measured (`observe`) once there are any; False: by FLOPs alone.
        decay: how much of the smoothed timing each new cycle keeps.
    """

    cost: CostModel
    max_d: int = 12
    prior: float = 0.8
    strength: float = 2.0
    measured: bool = True
    decay: float = 0.9
    _fits: dict[int, _CycleFit] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_d < 1:
            raise ValueError(f"adaptive draft length needs max_d >= 1, got {self.max_d}")
        if not 0.0 <= self.prior <= 1.0 or self.strength <= 0:
            raise ValueError(f"adaptive draft length needs prior in [0, 1] and strength > 0, got {self.prior}, "
                             f"{self.strength}")

    def best(self, alphas: Sequence[float], room: Sequence[int] | None = None, rows: int | None = None) -> int:
        """The d with the most expected tokens per unit of cost for rows at acceptance `alphas`, each drafting up to
        its `room`; priced at `rows` rows by measured seconds where there are any, else by FLOPs. 0: no draft
        pays for itself."""
        room = [self.max_d] * len(alphas) if room is None else room
        step, rest = self.prices(rows)
        value = [sum(self.cost.tokens_per_cycle(a, min(d, r)) for a, r in zip(alphas, room, strict=True))
                 / ((d + 1) * step + rest) for d in range(self.max_d + 1)]
        return max(range(self.max_d + 1), key=value.__getitem__)

    def choose(self, rows: Sequence[RowAcceptance], room: Sequence[int]) -> list[int]:
        alphas = [row.alpha(self.prior, self.strength) for row in rows]
        greedy = [b for b, row in enumerate(rows) if not row.sampled]
        batch = self.best([alphas[b] for b in greedy], [room[b] for b in greedy], len(rows)) if greedy else 0
        return [min(self.best([a]) if row.sampled else batch, r)
                for row, a, r in zip(rows, alphas, room, strict=True)]

    def observe(self, timing: CycleTiming) -> None:
        if self.measured:
            self._fits.setdefault(timing.rows, _CycleFit()).add(timing, self.decay)

    def prices(self, rows: int | None) -> tuple[float, float]:
        """(one drafted token, the rest of a cycle): fitted at the nearest number of rows timed, else in FLOPs."""
        if rows is None or not self._fits:
            c = self.cost
            return c.n + c.A + c.H, c.L - c.n - c.A  # so that (d + 1) * step + rest == c.cycle_cost(d)
        nearest = min(self._fits, key=lambda seen: (abs(seen - rows), -seen))
        return self._fits[nearest].prices()


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
