"""Draft-length policies: each live row's d for the next cycle, from the rows' own acceptance.

A policy sees every live row's `RowAcceptance` (tokens generated, smoothed accepted and rejected drafts) and the most
drafts each row can still use, and returns each row's d. `ScheduledDraft` follows a schedule of the tokens generated
(a fixed d, or the paper's eq. 5), as batch decoding does. `AdaptiveDraft` reads each row's live acceptance rate and
picks the d the cost of a cycle pays best for: argmax_d tokens(alpha, d) / cost(d), d = 0 (plain decoding through the
split) included.

Why one d for a batch. A cycle's draft loop runs until its longest row's d, over every row, and verification pads
every row to the longest draft. So giving a poorly accepted row a shorter d saves almost nothing, while giving it the
batch's d costs nothing extra: the batch's d is chosen once, from the sum of every row's expected tokens, and each
row drafts it (up to its own room). At batch 1 this is the row's own best d. A row's expected tokens follow the
acceptance measured per draft position over the greedy rows, scaled to the row's own rate, and the chance that its
output goes on that long, from the lengths of the greedy outputs that ended before it: a caption 10 tokens in has
few left, and a long draft past its end is paid for and never used.

Why measured costs. At small widths a step's Python and dispatch overhead outweighs its FLOPs, so the FLOP cost model
(`decoding/cost.py`) undervalues long drafts; and a batch's verification pass widens with d on a CPU, which the FLOP
model (weight-bound) does not count. After each cycle the engine reports it (`observe`), and the policy prices
a cycle with d drafts as fixed + per_token * (d + 1), fitted to the recent cycles at that number of rows. Until it has
measured, it prices cycles by the FLOP model.

Why admissions count. While requests wait, the rows a cycle frees are filled by a prefill pass before the next cycle,
and a pass has a fixed price whatever the number of requests it admits (on small models most of a pass's price).
Longer drafts free rows in fewer cycles, so fewer, fuller passes serve the same requests. The
policy fits a pass's seconds against the requests it admits, and adds the intercept, times the passes per cycle
measured at that number of rows, to a cycle's fixed price. The per-request part is left out: every request is
prefilled once, whatever d is.

Sampled rows keep a d of their own. A sampled token depends on where the cycles start, so a seeded sampled row's d
must not depend on its companions or on timings: it gets the d the FLOP model picks at its own acceptance, and its
tokens stay those of the request alone (`row_rules.py`). Greedy rows' tokens do not depend on d at all.
"""

from __future__ import annotations

import itertools
from collections import deque
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
class CycleReport:
    """What one cycle did and cost: `steps` draft steps (its longest row's d) over `rows` rows, in `draft_s` seconds
    of drafting and `rest_s` of verification, acceptance and bookkeeping; per row, the drafts proposed and accepted,
    and whether the row samples; the lengths of the outputs that ended in it; and the prefill passes that admitted
    requests into rows freed while other rows decoded, run just before it."""

    rows: int
    steps: int
    draft_s: float
    rest_s: float
    drafted: tuple[int, ...] = ()
    accepted: tuple[int, ...] = ()
    sampled: tuple[bool, ...] = ()
    ended: tuple[int, ...] = ()  # the lengths of the greedy rows that met a stop token in this cycle
    admissions: tuple[tuple[int, float], ...] = ()  # (requests admitted, seconds) per prefill pass


class DraftPolicy(Protocol):
    max_d: int  # the largest d it returns: a cycle writes up to max_d + 1 slots past a row's committed ones

    def choose(self, rows: Sequence[RowAcceptance], room: Sequence[int]) -> list[int]:
        """Each row's d for the next cycle; `room[b]`: the most drafts row b can still use (its budget left - 1)."""
        ...

    def observe(self, report: CycleReport) -> None:
        """Sees what the cycle just run did and cost."""
        ...


@dataclass(frozen=True)
class ScheduledDraft:
    """d from a schedule of the tokens generated so far: fixed d, or eq. 5 ("dynamic")."""

    schedule: DraftLength

    def choose(self, rows: Sequence[RowAcceptance], room: Sequence[int]) -> list[int]:
        return [min(self.schedule(row.generated), r) for row, r in zip(rows, room, strict=True)]

    def observe(self, report: CycleReport) -> None:
        pass

    @property
    def max_d(self) -> int:
        """The largest d the schedule ever asks for."""
        d = getattr(self.schedule, "d", None)
        return d if d is not None else self.schedule.d0 + self.schedule.span


@dataclass
class _Line:
    """t = intercept + slope * x, fitted by least squares over the recent observations (older ones decay)."""

    weight: float = 0.0
    x: float = 0.0
    t: float = 0.0
    xx: float = 0.0
    xt: float = 0.0

    def add(self, x: float, t: float, decay: float) -> None:
        self.weight, self.x, self.t = decay * self.weight + 1, decay * self.x + x, decay * self.t + t
        self.xx, self.xt = decay * self.xx + x * x, decay * self.xt + x * t

    def mean(self) -> float:
        """The weighted mean of t."""
        return self.t / self.weight

    def slope(self) -> float | None:
        """None where x has barely varied (variance <= 0.25): then no slope can be told from noise."""
        mean_x = self.x / self.weight
        spread = self.xx / self.weight - mean_x**2
        return (self.xt / self.weight - mean_x * self.mean()) / spread if spread > 0.25 else None

    def intercept(self, slope: float) -> float:
        return (self.t - slope * self.x) / self.weight


@dataclass
class _CycleFit:
    """A cycle's seconds against the tokens per row it drafts and verifies, k = steps + 1, at one number of rows:
    T(k) = fixed + per_token * k. Verification widens with k too, which a batch on a CPU feels; where k has barely
    varied yet, per_token is the drafting time per step alone. Also counts the prefill passes that admitted requests
    into the rows its cycles freed, per cycle."""

    line: _Line = field(default_factory=_Line)
    draft: float = 0.0
    passes: float = 0.0

    def add(self, report: CycleReport, decay: float) -> None:
        self.line.add(report.steps + 1, report.draft_s + report.rest_s, decay)
        self.draft = decay * self.draft + report.draft_s
        self.passes = decay * self.passes + len(report.admissions)

    def prices(self) -> tuple[float, float]:
        """(seconds per drafted token, seconds per cycle besides)."""
        per_token = max(self.line.slope() or 0.0, self.draft / self.line.x)  # drafting alone costs this much
        return per_token, max(self.line.intercept(per_token), 0.0)

    def passes_per_cycle(self) -> float:
        return self.passes / self.line.weight


@dataclass
class _PositionAcceptance:
    """Greedy rows' drafts pooled by position j in the cycle's draft: decayed counts of drafts judged there (reached
    with every earlier draft accepted) and accepted there. Acceptance falls with j (a draft strays further from the
    full model the longer it runs, and captions end), which one rate per row cannot say."""

    judged: list[float]
    accepted: list[float]

    def add(self, report: CycleReport, decay: float) -> None:
        self.judged = [decay * x for x in self.judged]
        self.accepted = [decay * x for x in self.accepted]
        for drafted, accepted, sampled in zip(report.drafted, report.accepted, report.sampled, strict=True):
            if sampled:
                continue
            for j in range(min(accepted + 1, drafted, len(self.judged))):
                self.judged[j] += 1
                self.accepted[j] += j < accepted

    def survival(self, alpha: float, pooled: float, strength: float) -> list[float]:
        """For a row at acceptance `alpha` among rows pooled at `pooled`: the chance that its first j + 1 drafts are
        all accepted, j = 0 .. max_d - 1. Each position's rate is pulled toward `pooled` by `strength` drafts and
        scaled by the row's own rate against the pool."""
        scale = alpha / pooled if pooled > 0 else 1.0
        out, alive = [], 1.0
        for judged, accepted in zip(self.judged, self.accepted, strict=True):
            alive *= min(1.0, scale * (accepted + pooled * strength) / (judged + strength))
            out.append(alive)
        return out


@dataclass
class AdaptiveDraft:
    """The d the cycle's cost pays best for, at each row's own acceptance rate (see the module docstring).

    Args:
        cost: the backbone's FLOP cost model at the draft's exit layer (`measure_cost_model`): the price of a
            cycle until one is measured, and always for sampled rows.
        max_d: the largest d considered.
        prior: the acceptance rate a row starts from, before any of its drafts is judged; a greedy row starts from
            its greedy companions' pooled rate instead (itself pulled toward `prior`).
        strength: how many judged drafts the prior weighs as.
        measured: price cycles by the seconds measured (`observe`) once there are any; False: by FLOPs alone.
        decay: how much of the fitted timing and of the per-position counts each new cycle keeps.
    """

    cost: CostModel
    max_d: int = 12
    prior: float = 0.8
    strength: float = 2.0
    measured: bool = True
    decay: float = 0.9
    _fits: dict[int, _CycleFit] = field(default_factory=dict, init=False, repr=False)
    _admissions: _Line = field(default_factory=_Line, init=False, repr=False)  # a pass's seconds by requests
    _positions: _PositionAcceptance | None = field(default=None, init=False, repr=False)
    _ended: deque[int] = field(default_factory=lambda: deque(maxlen=256), init=False, repr=False)
    _at_least: list[int] = field(default_factory=list, init=False, repr=False)  # [x]: ended outputs of >= x tokens

    def __post_init__(self) -> None:
        if self.max_d < 1:
            raise ValueError(f"adaptive draft length needs max_d >= 1, got {self.max_d}")
        if not 0.0 <= self.prior <= 1.0 or self.strength <= 0:
            raise ValueError(f"adaptive draft length needs prior in [0, 1] and strength > 0, got {self.prior}, "
                             f"{self.strength}")

    def best(self, alphas: Sequence[float], room: Sequence[int] | None = None, rows: int | None = None,
             pooled: float | None = None, generated: Sequence[int] | None = None) -> int:
        """The d with the most expected tokens per unit of cost for rows at acceptance `alphas`, each drafting up to
        its `room`; priced at `rows` rows by measured seconds where there are any, else by FLOPs. With `pooled`
        (the rows' pooled rate), the tokens follow the acceptance measured per draft position, and with
        `generated` (each row's tokens so far) the chance that the row's output goes on that long; without, every
        position is accepted at the row's rate and every output goes on. 0: no draft pays for itself."""
        room = [self.max_d] * len(alphas) if room is None else room
        generated = [None] * len(alphas) if generated is None else generated
        step, rest = self.prices(rows)
        tokens = [0.0] * (self.max_d + 1)
        for a, r, g in zip(alphas, room, generated, strict=True):
            alive = (self._positions.survival(a, pooled, self.strength) if pooled is not None and self._positions
                     else [a ** (j + 1) for j in range(self.max_d)])
            going = self._going(g)
            total = 1.0  # a live row always adds a token
            for d in range(self.max_d + 1):
                tokens[d] += total
                if d < min(r, self.max_d):
                    total += alive[d] * going[d]
        value = [tokens[d] / ((d + 1) * step + rest) for d in range(self.max_d + 1)]
        return max(range(self.max_d + 1), key=value.__getitem__)

    def _going(self, generated: int | None) -> list[float]:
        """For a row that has generated `generated` tokens, the chance that its output reaches 2, 3, ... max_d + 1
        more tokens, from the lengths of the greedy outputs that ended before (pulled toward "it goes on" by
        `strength` outputs); all 1 before any ended, or without `generated`."""
        if generated is None or not self._ended:
            return [1.0] * self.max_d
        longer = self._ended_at_least(generated + 1)
        return [(self._ended_at_least(generated + t) + self.strength) / (longer + self.strength)
                for t in range(2, self.max_d + 2)]

    def _ended_at_least(self, tokens: int) -> int:
        return self._at_least[tokens] if tokens < len(self._at_least) else 0

    def choose(self, rows: Sequence[RowAcceptance], room: Sequence[int]) -> list[int]:
        greedy = [b for b, row in enumerate(rows) if not row.sampled]
        batch = 0
        if greedy:
            # a greedy row starts from its greedy companions' acceptance, not the fixed prior: rows of one stream
            # resemble each other far more than a prior guessed before any was seen
            pooled = RowAcceptance(accepted=sum(rows[b].accepted for b in greedy),
                                   judged=sum(rows[b].judged for b in greedy)).alpha(self.prior, self.strength)
            alphas = [rows[b].alpha(pooled, self.strength) for b in greedy]
            batch = self.best(alphas, [room[b] for b in greedy], len(rows), pooled,
                              [rows[b].generated for b in greedy])
        return [min(self.best([row.alpha(self.prior, self.strength)]) if row.sampled else batch, r)
                for row, r in zip(rows, room, strict=True)]

    def observe(self, report: CycleReport) -> None:
        if report.ended:  # counted once here, not per row and cycle in `_going`
            self._ended.extend(report.ended)
            counts = [0] * (max(self._ended) + 1)
            for length in self._ended:
                counts[length] += 1
            self._at_least = list(itertools.accumulate(reversed(counts)))[::-1]
        if report.drafted:
            if self._positions is None:
                self._positions = _PositionAcceptance([0.0] * self.max_d, [0.0] * self.max_d)
            self._positions.add(report, self.decay)
        if self.measured:
            self._fits.setdefault(report.rows, _CycleFit()).add(report, self.decay)
            for requests, seconds in report.admissions:
                self._admissions.add(requests, seconds, self.decay)

    def prices(self, rows: int | None) -> tuple[float, float]:
        """(one drafted token, the rest of a cycle): fitted at the nearest number of rows timed, else in FLOPs.
        The rest includes the fixed part of the prefill passes that follow a cycle at that number of rows."""
        if rows is None or not self._fits:
            c = self.cost
            return c.n + c.A + c.H, c.L - c.n - c.A  # so that (d + 1) * step + rest == c.cycle_cost(d)
        fit = self._fits[min(self._fits, key=lambda seen: (abs(seen - rows), -seen))]
        per_token, rest = fit.prices()
        return per_token, rest + fit.passes_per_cycle() * self.admission_overhead()

    def admission_overhead(self) -> float:
        """Seconds a prefill pass costs whatever the number of requests it admits: its intercept against that
        number. 0 until the passes have admitted different numbers of requests (one row: every request needs its
        own pass whatever d is, and a pass's cost cannot be split)."""
        if not self._admissions.weight:
            return 0.0
        slope = self._admissions.slope()
        return 0.0 if slope is None else min(max(self._admissions.intercept(slope), 0.0), self._admissions.mean())


def draft_policy(spec: int | str | DraftLength | DraftPolicy, cost: CostModel | None = None) -> DraftPolicy:
    """Parses a user setting: d, "dynamic" (eq. 5), "adaptive" (needs the cost model), or a policy object."""
    spec = parse_draft(spec)
    if spec == "adaptive":
        if cost is None:
            raise ValueError("draft 'adaptive' picks each row's d through the cost model: give the cost model")
        return AdaptiveDraft(cost)
    if all(hasattr(spec, name) for name in ("choose", "observe", "max_d")):
        return spec  # any `DraftPolicy`
    return ScheduledDraft(draft_length(spec))
