"""One place that builds a decoder from a mode name, for the LightningModules, the bench and the callbacks.

Modes (names follow the paper's table rows):

  - full: the full model, plain KV-cached decoding (the speed reference);
  - draft: layers [0, n) -> final norm -> head alone ("Draft w/o Im");
  - draft_imit: layers [0, n) + imitation network alone ("Draft w Im");
  - ssd: self-speculative decoding with the imitation network (or the plain early exit when there is none);
  - draft_verify: the Draft & Verify baseline (Zhang et al. 2023, `skip_drafter.py`): the full model without the
    layers in `skip_layers` drafts, stopping after its first draft whose top-1 probability is below
    `confidence_threshold` (None: d drafts per cycle), adapted to the acceptance rate with `adaptive_threshold`;
    the full model verifies from the first skipped layer on. Of the draft spec only d and the threshold are used.

Every mode past "full" reads its draft settings from one `DraftSpec`, which reaches the decoder and its drafter as
given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.checks import MODES, check_modes
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder, SpeculativeDecoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold, SkipLayerDrafter
from lightning_ssd.decoding.spec import DraftSpec

__all__ = ["MODES", "build_decoder"]


def build_decoder(
    mode: str,
    decoder: SplitDecoder,
    eos_token_id: Sequence[int] = (),
    spec: DraftSpec | None = None,
    skip_layers: Sequence[int] | None = None,
    adaptive_threshold: AdaptiveThreshold | None = None,
) -> BatchDecoder:
    """The decoder of `mode` over `decoder`. draft, draft_imit and ssd draft by `spec` (its n; draft_imit its
    imitation network too); draft_verify takes d and the threshold from `spec` (default: d = 4, no threshold) and
    needs `skip_layers` (and optionally `adaptive_threshold`)."""
    spec = spec or DraftSpec()
    check_modes([mode], spec.imitation is not None, spec.n, "decoding mode")
    if mode == "full":
        return GreedyDecoder(decoder, eos_token_id)
    if mode == "draft_verify":
        if skip_layers is None:
            raise ValueError("decoding mode 'draft_verify' drafts with a set of layers skipped: set skip_layers "
                             "(lightning_ssd.nas.skip_set.search_skip_set finds one)")
        drafter = SkipLayerDrafter(decoder, skip_layers, eos_token_id, spec.confidence_threshold, adaptive_threshold)
        return SpeculativeDecoder(decoder, drafter, spec.draft, eos_token_id)
    if mode == "draft":
        return DraftOnlyDecoder(decoder, spec if spec.imitation is None else replace(spec, imitation=None),
                                eos_token_id)
    if mode == "draft_imit":
        return DraftOnlyDecoder(decoder, spec, eos_token_id)
    return SelfSpeculativeDecoder(decoder, spec, eos_token_id)
