"""One place that builds a decoder from a mode name, for the LightningModules, the bench and the callbacks.

Modes (names follow the paper's table rows):
  - full: the full model, plain KV-cached decoding (the speed reference);
  - draft: layers [0, n) -> final norm -> head alone ("Draft w/o Im");
  - draft_imit: layers [0, n) + imitation network alone ("Draft w Im");
  - ssd: self-speculative decoding with the imitation network (or the plain early exit when there is none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.decoding.schedule import DraftLength

Mode = Literal["full", "draft", "draft_imit", "ssd"]
MODES: tuple[str, ...] = ("full", "draft", "draft_imit", "ssd")


def build_decoder(
    mode: str,
    decoder: SplitDecoder,
    eos_token_id: Sequence[int] = (),
    n: int | None = None,
    imitation: nn.Module | None = None,
    draft: int | str | DraftLength = 4,
    confidence_threshold: float | None = None,
) -> BatchDecoder:
    """The decoder of `mode` over `decoder`; `n` is needed by every mode but full, `imitation` by draft_imit."""
    if mode not in MODES:
        raise ValueError(f"unknown decoding mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "full":
        return GreedyDecoder(decoder, eos_token_id)
    if n is None:
        raise ValueError(f"decoding mode {mode!r} drafts from an exit layer: set n")
    if mode == "draft":
        return DraftOnlyDecoder(decoder, n, None, eos_token_id)
    if mode == "draft_imit":
        if imitation is None:
            raise ValueError("decoding mode 'draft_imit' needs an imitation network")
        return DraftOnlyDecoder(decoder, n, imitation, eos_token_id)
    return SelfSpeculativeDecoder(decoder, n, imitation, draft, eos_token_id, confidence_threshold=confidence_threshold)
