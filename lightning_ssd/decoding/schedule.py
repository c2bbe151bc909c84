"""How many tokens to draft per cycle: a fixed d, or the paper's context-dependent d(t) (appendix A.3, eq. 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lightning_ssd.decoding.checks import parse_draft


@dataclass(frozen=True)
class FixedDraftLength:
    """d tokens every cycle."""

    d: int

    def __post_init__(self) -> None:
        if self.d < 1:
            raise ValueError(f"draft length d must be >= 1, got d={self.d}")

    def __call__(self, t: int) -> int:
        return self.d


@dataclass(frozen=True)
class DynamicDraftLength:
    """Eq. 5: d(t) = d(0) + floor(span * sigmoid(slope * (t - N/2))), t = tokens generated so far.

    With the paper's values (d(0)=5, span=10, slope=0.01) d(t) grows from 5 toward 15 as the context grows, since
    acceptance rises with context length (paper fig. 6). N is the maximum sequence length considered.
    """

    d0: int = 5
    span: int = 10
    slope: float = 0.01
    horizon: int = 512

    def __post_init__(self) -> None:
        if self.d0 < 1:
            raise ValueError(f"dynamic draft length needs d0 >= 1, got d0={self.d0}")
        if self.span < 0 or self.horizon < 1:
            raise ValueError(f"dynamic draft length needs span >= 0 and horizon >= 1, got {self.span}, {self.horizon}")

    def __call__(self, t: int) -> int:
        return self.d0 + math.floor(self.span / (1.0 + math.exp(-self.slope * (t - self.horizon / 2))))


DraftLength = FixedDraftLength | DynamicDraftLength


def draft_length(spec: int | str | DraftLength, horizon: int = 512) -> DraftLength:
    """Parses a user setting: an int d, "dynamic" (eq. 5 with the paper's constants), or a schedule object."""
    spec = parse_draft(spec, "draft length", ("dynamic",))
    if isinstance(spec, FixedDraftLength | DynamicDraftLength):
        return spec
    if spec == "dynamic":
        return DynamicDraftLength(horizon=horizon)
    return FixedDraftLength(int(spec))
