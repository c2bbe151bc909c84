"""Acceptance and speed statistics of a decoder, as tensor sums that DDP reduces exactly."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.timing import batch_counts, bound_from_counts

# batch_longest / batch_most_cycles: per batch, the longest row's tokens from cycles and the most cycles of a row
_COUNTS = ("sequences", "tokens", "cycles", "emitted", "drafted", "judged", "accepted", "batch_longest",
           "batch_most_cycles")


class AcceptanceStats(Metric):
    """Draft acceptance (tau, alpha, per draft position, per output step) and decoding time of one decoder.

    tau = emitted tokens / verification passes (the full model's own token included, and cycles that drafted
    nothing under a confidence threshold counted), NaN when nothing was drafted at all; alpha = accepted / judged
    draft tokens, a draft token being judged when every draft before it in its cycle was accepted. A draft token's
    output step t is its index in the generated sequence (paper fig. 6); the first token, from the prefill, is
    never drafted. Times are wall-clock seconds, prefill included, so ``seconds_per_token`` is the per-token
    latency a user sees. Plain greedy or draft-only results contribute time and tokens only. ``speedup_bound`` is
    the largest speedup over plain decoding that the acceptance allows (`lightning_ssd.timing`), for the check of a
    measured one.

    Args:
        max_draft: draft positions tracked per cycle (d up to this); later positions are counted in the
            totals but not in ``acceptance_by_position``.
        max_steps: output steps tracked in ``acceptance_by_step``.
        **kwargs: passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, max_draft: int = 32, max_steps: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_draft < 1 or max_steps < 1:
            raise ValueError(f"max_draft and max_steps must be >= 1, got {max_draft}, {max_steps}")
        for name in _COUNTS:
            self.add_state(name, default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("seconds", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name, size in (("position_reached", max_draft), ("position_accepted", max_draft),
                           ("step_judged", max_steps), ("step_accepted", max_steps)):
            self.add_state(name, default=torch.zeros(size, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, result: GenerationResult) -> None:
        """Adds the sequences of one decoded batch."""
        max_draft, max_steps = self.position_reached.numel(), self.step_judged.numel()
        position_reached, position_accepted = [0] * max_draft, [0] * max_draft
        step_judged, step_accepted = [0] * max_steps, [0] * max_steps
        counts = dict.fromkeys(_COUNTS, 0)
        seconds = 0.0
        for seq in result.sequences:
            counts["sequences"] += 1
            counts["tokens"] += len(seq.tokens)
            seconds += seq.prefill_time_s + seq.decode_time_s
            step = 1  # the prefill produced token 0
            for c in seq.cycles:
                if c.deep_passes:
                    counts["cycles"] += 1
                    counts["emitted"] += c.emitted
                if c.drafted:
                    judged = min(c.accepted + 1, c.drafted)
                    counts["drafted"] += c.drafted
                    counts["judged"] += judged
                    counts["accepted"] += c.accepted
                    for i in range(judged):
                        hit = int(i < c.accepted)
                        if i < max_draft:
                            position_reached[i] += 1
                            position_accepted[i] += hit
                        if step + i < max_steps:
                            step_judged[step + i] += 1
                            step_accepted[step + i] += hit
                step += c.emitted
        _, _, counts["batch_longest"], counts["batch_most_cycles"] = batch_counts(result)
        for name, value in counts.items():
            getattr(self, name).add_(value)
        self.seconds += seconds
        for name, values in (("position_reached", position_reached), ("position_accepted", position_accepted),
                             ("step_judged", step_judged), ("step_accepted", step_accepted)):
            getattr(self, name).add_(torch.tensor(values, dtype=torch.int64, device=self.device))

    def compute(self) -> dict[str, Tensor]:
        """``tau``, ``alpha``, ``seconds_per_token``, ``speedup_bound`` (scalars; NaN when undefined), ``sequences``
        (how many were decoded, over all ranks) and the curves ``acceptance_by_position`` (max_draft,) and
        ``acceptance_by_step`` (max_steps,), NaN where nothing was judged, with the number of draft tokens judged at
        each point (``judged_by_position``, ``judged_by_step``).
        """
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.device)

        def ratio(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(b > 0, a.double() / b.clamp(min=1).double(), nan)

        bound = bound_from_counts(*(float(getattr(self, k)) for k in ("emitted", "cycles", "batch_longest",
                                                                       "batch_most_cycles")))
        return {
            "tau": torch.where(self.drafted > 0, ratio(self.emitted, self.cycles), nan),
            "speedup_bound": torch.where(self.drafted > 0, torch.tensor(bound, dtype=torch.float64,
                                                                        device=self.device), nan),
            "alpha": ratio(self.accepted, self.judged),
            "seconds_per_token": ratio(self.seconds, self.tokens),
            "sequences": self.sequences.clone(),
            "acceptance_by_position": ratio(self.position_accepted, self.position_reached),
            "acceptance_by_step": ratio(self.step_accepted, self.step_judged),
            "judged_by_position": self.position_reached.clone(),
            "judged_by_step": self.step_judged.clone(),
        }
