"""One place that builds a decoder from a mode name, for the LightningModules, the bench and the callbacks.

Modes (names follow the paper's table rows):

  - full: the full model, plain KV-cached decoding (the speed reference);
  - draft: layers [0, n) -> final norm -> head alone ("Draft w/o Im");
  - draft_imit: layers [0, n) + imitation network alone ("Draft w Im");
  - ssd: self-speculative decoding with the imitation network (or the plain early exit when there is none);
  - draft_verify: the Draft & Verify baseline (Zhang et al. 2023, `skip_drafter.py`): the full model without the
    layers in `skip_layers` drafts, stopping after its first draft whose top-1 probability is below
    `confidence_threshold` (None: d drafts per cycle), adapted to the acceptance rate with `adaptive_threshold`;
    the full model verifies from the first skipped layer on. `n` and `imitation` are not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder, SpeculativeDecoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.decoding.schedule import DraftLength
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold, SkipLayerDrafter

Mode = Literal["full", "draft", "draft_imit", "ssd", "draft_verify"]
MODES: tuple[str, ...] = ("full", "draft", "draft_imit", "ssd", "draft_verify")


def build_decoder(
    mode: str,
    decoder: SplitDecoder,
    eos_token_id: Sequence[int] = (),
    n: int | None = None,
    imitation: nn.Module | None = None,
    draft: int | str | DraftLength = 4,
    confidence_threshold: float | None = None,
    skip_layers: Sequence[int] | None = None,
    adaptive_threshold: AdaptiveThreshold | None = None,
) -> BatchDecoder:
    """The decoder of `mode` over `decoder`; `n` is needed by draft, draft_imit and ssd, `imitation` by draft_imit,
    `skip_layers` (and optionally `adaptive_threshold`) by draft_verify."""
    if mode not in MODES:
        raise ValueError(f"unknown decoding mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "full":
        return GreedyDecoder(decoder, eos_token_id)
    if mode == "draft_verify":
        if skip_layers is None:
            raise ValueError("decoding mode 'draft_verify' drafts with a set of layers skipped: set skip_layers "
                             "(lightning_ssd.nas.skip_set.search_skip_set finds one)")
        drafter = SkipLayerDrafter(decoder, skip_layers, eos_token_id, confidence_threshold, adaptive_threshold)
        return SpeculativeDecoder(decoder, drafter, draft, eos_token_id)
    if n is None:
        raise ValueError(f"decoding mode {mode!r} drafts from an exit layer: set n")
    if mode == "draft":
        return DraftOnlyDecoder(decoder, n, None, eos_token_id)
    if mode == "draft_imit":
        if imitation is None:
            raise ValueError("decoding mode 'draft_imit' needs an imitation network")
        return DraftOnlyDecoder(decoder, n, imitation, eos_token_id)
    return SelfSpeculativeDecoder(decoder, n, imitation, draft, eos_token_id, confidence_threshold=confidence_threshold)
