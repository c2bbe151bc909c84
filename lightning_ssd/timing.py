"""What a measured speedup may be: the bound the acceptance figures and the cost model put on it, and its check.

In the cost model of `decoding/cost.py`, a cycle that drafts d tokens costs
    (d + 1) n + d (A + H) + (L - n) + H  =  (L + H) + d (n + A + H)  >=  L + H
layer-equivalents, at least one plain decoding step (L + H), and emits tau tokens on average. So the decode speedup
over plain decoding of the same tokens is at most
    tau (L + H) / (L + H + mean(d) (n + A + H))  <=  tau,
whatever alpha, d, A and H are. The same holds for any lossless method that verifies with the whole model once per
cycle (Draft & Verify). Prefill time, when a figure includes it, only pulls a ratio towards 1.

A batch decodes all its rows in the same steps: where a step costs the same however many rows are live (decoding
bound by reading weights), a batch takes as many cycles as its slowest row, and the bound becomes the sum over
batches of the longest row's decoded tokens over the sum of the most cycles a row needed. `speedup_bound` is the
larger of that and tau (the two are equal for one-row batches).

A measured figure above the bound times (1 + SLACK) cannot come from decoding: it comes from the clock, typically a
baseline timed once, without warm-up, while another job held the CPU (the "107.7x speedup at tau 1.5" of an early
d-sweep). `check_speedup` flags it with an `ImplausibleSpeedupWarning` and returns a note for the table; the
tables mark the figure with FLAG.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Sequence

from lightning_ssd.decoding.result import GenerationResult

SLACK = 0.2  # timing noise between repeats on a shared CPU, and steps whose cost falls slightly with fewer rows
FLAG = "⚠"


class ImplausibleSpeedupWarning(UserWarning):
    """A measured speedup exceeds what the measured acceptance allows (see `lightning_ssd.timing`)."""


def batch_counts(result: GenerationResult) -> tuple[int, int, int, int]:
    """(decoded tokens, cycles, the longest row's decoded tokens, the most cycles of a row) of one decoded batch,
    counting only cycles with a deep (verification) pass, as tau does."""
    rows = [(sum(c.emitted for c in s.cycles if c.deep_passes), sum(1 for c in s.cycles if c.deep_passes))
            for s in result.sequences]
    if not rows:
        return 0, 0, 0, 0
    return (sum(e for e, _ in rows), sum(k for _, k in rows), max(e for e, _ in rows), max(k for _, k in rows))


def bound_from_counts(emitted: float, cycles: float, longest: float, most_cycles: float) -> float:
    """The largest plausible speedup from summed `batch_counts` (NaN when nothing was verified)."""
    if cycles <= 0 or most_cycles <= 0:
        return math.nan
    return max(emitted / cycles, longest / most_cycles)


def speedup_bound(results: Iterable[GenerationResult]) -> float:
    """The largest decode speedup over plain decoding that these speculative results allow (module docstring)."""
    totals = [0, 0, 0, 0]
    for result in results:
        totals = [a + b for a, b in zip(totals, batch_counts(result), strict=True)]
    return bound_from_counts(*totals)


def median_run(runs: Sequence[GenerationResult]) -> GenerationResult:
    """The run of median wall time (the lower middle one for an even count). Greedy runs of the same inputs differ
    in their times only, so the median run stands for all of them."""
    times = [sum(s.prefill_time_s + s.decode_time_s for s in run.sequences) for run in runs]
    return runs[times.index(statistics.median_low(times))]


def check_speedup(speedup: float, bound: float, what: str, slack: float = SLACK) -> str | None:
    """None when `speedup` is within `bound` x (1 + slack) (or either is undefined); else a warning, also returned."""
    if not (math.isfinite(speedup) and math.isfinite(bound)) or speedup <= bound * (1.0 + slack):
        return None
    message = (f"{what}: a measured speedup of {speedup:.2f}x exceeds the {bound:.2f}x that the measured acceptance "
               "allows (tau tokens per cycle, each cycle at least one full-model step; lightning_ssd/timing.py). It "
               "is a timing artefact, such as another job on the CPU: rerun on a quiet machine, with --threads 1")
    warnings.warn(message, ImplausibleSpeedupWarning, stacklevel=2)
    return message


def marked(text: str, flagged: bool) -> str:
    """A table cell, with FLAG after it when its figure failed `check_speedup`."""
    return f"{text} {FLAG}" if flagged else text
