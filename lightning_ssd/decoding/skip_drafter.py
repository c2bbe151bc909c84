"""The Draft & Verify baseline (Zhang et al. 2023): the full model with a set of its layers skipped drafts.

Draft model: every decoder layer of the full model except those in a skip set, then the final norm and LM head.

- Whole layers are skipped, not attention and MLP sublayers apart as in the original. Separate skipping would need
  each family's layer internals (Llama/Qwen `self_attn` and `mlp`, OPT's `fc1`/`fc2` pair that is no module of its
  own, T5's three sublayers with cross-attention) and masks sized from a layer whose attention ran, since a skipped
  attention writes no cache slot. All of that belongs to the split decoders in backbones/, whose `run_layers` takes
  whole layer ranges; a drafter over that interface skips whole layers.
- Verification runs layers [m, L) from the draft's states at m, the first skipped layer (at most L - 1). Layers
  [0, m) of the draft are the full model's own computation, so their states and keys/values are exact and kept; in
  layers [m, L) the draft's states are not the full model's, so its keys/values there are discarded
  (`BatchState.discard`) before the verification pass writes the true ones. A skip set holding layer 0 verifies
  all L layers.
- Adaptive draft exiting: a row stops drafting after the first draft whose top-1 probability is below the
  threshold; that draft is still verified, as in the original (`ShallowDrafter` drops it instead). With
  `AdaptiveThreshold`, each row's threshold then follows its acceptance rate (see there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.acceptance import AcceptanceRule
from lightning_ssd.decoding.checks import check_confidence_threshold
from lightning_ssd.decoding.drafters import AutoregressiveDrafter, Draft
from lightning_ssd.decoding.state import BatchState


@dataclass(frozen=True)
class AdaptiveThreshold:
    """D&V's update of the draft-exiting threshold gamma after each verification, per row.

    With a = accepted / drafted of the row's last cycle (cycles that drafted nothing are skipped):
        r     <- beta1 * r + (1 - beta1) * a                    (smoothed acceptance, r = 0 at the start)
        gamma' = gamma + step   if r < target                   (drafts are poor: exit earlier)
                 gamma          if r >= target and the row drafted its whole budget
                 gamma - step   otherwise                       (drafts are good: exit later)
        gamma <- beta2 * gamma + (1 - beta2) * gamma', clipped to [0, 1]

    The defaults are the original code's (target 0.9, step 0.01, beta1 0.5, beta2 0.9). The threshold only changes
    how many tokens are drafted, never which tokens are emitted.
    """

    target: float = 0.9
    step: float = 0.01
    beta1: float = 0.5
    beta2: float = 0.9

    def __post_init__(self) -> None:
        for name in ("target", "beta1", "beta2"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"adaptive threshold {name} must be in [0, 1], got {value}")
        if not 0.0 <= self.step <= 1.0:
            raise ValueError(f"adaptive threshold step must be in [0, 1], got {self.step}")


def check_skip_layers(skip_layers: Sequence[int], num_layers: int) -> frozenset[int]:
    """The skip set as a frozenset, refused when a layer is out of [0, L) or when every layer is skipped."""
    bad = [i for i in skip_layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"skip_layers holds {bad}: layer indices must be integers in [0, L-1] = "
                         f"[0, {num_layers - 1}] for this backbone")
    skip = frozenset(skip_layers)
    if len(skip) == num_layers:
        raise ValueError(f"skip_layers skips all {num_layers} layers: the draft model needs at least one layer")
    return skip


def _kept_segments(skip: frozenset[int], lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    """Maximal runs [a, b) of layers in [lo, hi) that are not skipped."""
    segments, start = [], None
    for idx in range(lo, hi + 1):
        kept = idx < hi and idx not in skip
        if kept and start is None:
            start = idx
        elif not kept and start is not None:
            segments.append((start, idx))
            start = None
    return tuple(segments)


class SkipLayerDrafter(AutoregressiveDrafter):
    """Draft & Verify's draft model: the full model without the layers in `skip_layers`.

    Args:
        decoder: the backbone's split decoder.
        skip_layers: layer indices in [0, L) the draft skips; empty: the draft is the full model (every draft
            accepted); not every layer.
        eos_token_id: tokens after which a row stops drafting.
        confidence_threshold: a row's draft ends after its first token whose top-1 probability is below this
            (the starting value when `adaptive` is set); None drafts d tokens every cycle.
        adaptive: adapts each row's threshold to its acceptance rate (needs `confidence_threshold`).

    Attributes:
        layer: m, the first skipped layer (L - 1 for an empty skip set): verification runs layers [m, L). It plays
            the part SSD's exit layer n plays (`Drafter.layer`), but the draft does not stop there: it runs the kept
            layers of [m, L) too.
    """

    propose_first_unsure = True  # the original verifies the first unconfident draft too

    def __init__(
        self,
        decoder: SplitDecoder,
        skip_layers: Sequence[int],
        eos_token_id: Sequence[int] = (),
        confidence_threshold: float | None = None,
        adaptive: AdaptiveThreshold | None = None,
    ) -> None:
        L = decoder.num_layers
        self.skip = check_skip_layers(skip_layers, L)
        check_confidence_threshold(confidence_threshold)
        if adaptive is not None and confidence_threshold is None:
            raise ValueError("an adaptive draft-exiting threshold starts from confidence_threshold: set it "
                             "(the original starts at 0.8)")
        self.decoder, self.adaptive = decoder, adaptive
        self.confidence_threshold = confidence_threshold
        self.layer = min(min(self.skip, default=L - 1), L - 1)
        self._segments = _kept_segments(self.skip, self.layer, L)
        self.eos = torch.tensor(list(eos_token_id), dtype=torch.long)
        self._rows: _RowStats | None = None

    @property
    def skip_layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.skip))

    @property
    def row_thresholds(self) -> torch.Tensor | None:
        """(B,) each row's threshold after the last batch decoded (rows of that batch); None without a threshold."""
        return None if self._rows is None else self._rows.threshold

    def observe_prompt(self, state: BatchState, x: torch.Tensor) -> None:
        # a new batch: thresholds and acceptance start afresh, one entry per row of the original batch
        if self.confidence_threshold is not None:
            self._rows = _RowStats(state.batch_size, self.confidence_threshold, state.device)

    def thresholds(self, state: BatchState) -> torch.Tensor | None:
        if self._rows is None:
            return None
        if self.adaptive is not None:
            self._rows.adapt(state, self.adaptive)
        return self._rows.threshold[state.rows]  # (B,)

    def draft_logits(self, state: BatchState, x_m: torch.Tensor, offset: int) -> torch.Tensor:
        """The draft's logits from x_m: the kept layers of [m, L), `offset` slots past the committed ones."""
        for lo, hi in self._segments:
            x_m = state.run(x_m, lo, hi, offset)
        return self.decoder.head(x_m)[:, -1]

    def finish(self, state: BatchState, x: torch.Tensor, offset: int, fed: bool) -> None:
        # the draft's keys/values past layer m are not the full model's: verification rewrites those slots
        state.discard(self.layer, self.decoder.num_layers)

    def propose(self, state: BatchState, last: torch.Tensor, budget: torch.Tensor, rule: AcceptanceRule) -> Draft:
        draft = super().propose(state, last, budget, rule)
        if self._rows is not None:
            self._rows.record(state, draft.lengths, budget)
        return draft


class _RowStats:
    """Per-row threshold and smoothed acceptance over the rows of the original batch (rows leave, never move).

    A row's accepted count is read from the state: a verified cycle advances the row's position by accepted + 1.
    """

    def __init__(self, batch_size: int, threshold: float, device: torch.device) -> None:
        self.threshold = torch.full((batch_size,), float(threshold), device=device)
        self.smoothed = torch.zeros(batch_size, device=device)
        self.position = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.drafted = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.cut = torch.zeros(batch_size, dtype=torch.bool, device=device)

    def record(self, state: BatchState, lengths: torch.Tensor, budget: torch.Tensor) -> None:
        """Remembers this cycle's drafts, and whether they ended before the budget, to read the outcome next cycle."""
        rows = state.rows
        self.position[rows] = state.position
        self.drafted[rows] = lengths
        self.cut[rows] = lengths < budget

    def adapt(self, state: BatchState, rule: AdaptiveThreshold) -> None:
        rows = state.rows
        drafted = self.drafted[rows]
        judged = drafted > 0  # also False in a batch's first cycle
        accepted = (state.position - self.position[rows] - 1).clamp(min=0)
        rate = accepted.float() / drafted.clamp(min=1).float()
        smoothed = torch.where(judged, rule.beta1 * self.smoothed[rows] + (1 - rule.beta1) * rate, self.smoothed[rows])
        gamma = self.threshold[rows]
        lower = torch.where(self.cut[rows], gamma - rule.step, gamma)
        target = torch.where(smoothed < rule.target, gamma + rule.step, lower)
        updated = (rule.beta2 * gamma + (1 - rule.beta2) * target).clamp(0.0, 1.0)
        self.smoothed[rows] = smoothed
        self.threshold[rows] = torch.where(judged, updated, gamma)
