"""The draft specification: everything that says how SSD drafts, in one typed, validated object.

`DraftSpec` holds the draft exit layer n, the imitation network, d or its policy, and the confidence threshold. It is
built once where the settings enter (a LightningModule's arguments, a command's flags, a draft read from a checkpoint
or a draft folder by `models.checkpoint.load_draft_spec`) and handed unchanged to `build_decoder` and to the drafter
(`ShallowDrafter.spec`). The exit layer is called n everywhere; `Drafter.layer` is the layer verification starts
from, which is n for SSD's shallow draft and the first skipped layer for Draft & Verify's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.checks import (
    check_confidence_threshold,
    check_exit_layer,
    check_imitation_width,
    parse_draft,
)

if TYPE_CHECKING:
    from lightning_ssd.decoding.draft_policy import DraftPolicy
    from lightning_ssd.decoding.schedule import DraftLength


@dataclass(frozen=True)
class DraftSpec:
    """How to draft: the settings of the paper's draft model M_D and of each cycle.

    Args:
        n: the draft exit layer, 1 <= n <= L - 1: the draft runs layers [0, n), verification [n, L). None only
            where no draft is decoded with (the full model alone, or Draft & Verify, which has no exit layer).
        imitation: the imitation network I (x_n -> x_I); None drafts with the plain early exit, x_n -> norm -> head.
        draft: d per cycle: an int, "dynamic" (paper eq. 5), "adaptive" (per row, continuous batching only), or a
            schedule or policy object; a digit string is read as d.
        confidence_threshold: a row stops drafting at its first draft whose top-1 probability is below this (the
            unconfident token is not drafted; verification then yields the full model's token at its place). None
            drafts d tokens every cycle. Output is unchanged either way; only the work per cycle differs.
        prefix: how the settings were given, put before each one's name in an error: "" (Python),
            "model.init_args." (a config), "--" (a command line, where `confidence_threshold` reads
            `--confidence-threshold`). Not part of the spec's value.

    Built specs are valid on their own (d and the threshold); `check(decoder)` adds what needs the backbone (n's
    range and the imitation network's width).
    """

    n: int | None = None
    imitation: nn.Module | None = None
    draft: int | str | DraftLength | DraftPolicy = 4
    confidence_threshold: float | None = None
    prefix: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "draft", parse_draft(self.draft, self.setting("draft")))
        check_confidence_threshold(self.confidence_threshold, self.setting("confidence_threshold"))

    def setting(self, name: str) -> str:
        """The name the user gave field `name` by: `n`, `model.init_args.n`, `--confidence-threshold`."""
        return self.prefix + (name.replace("_", "-") if self.prefix == "--" else name)

    def check(self, decoder: SplitDecoder) -> DraftSpec:
        """Refuses a spec that cannot draft for `decoder`: n unset or out of [1, L-1], an imitation network of
        another width. Returns the spec, unchanged."""
        check_exit_layer(self.n, decoder.num_layers, self.setting("n"))
        if self.imitation is not None:
            check_imitation_width(getattr(self.imitation, "hidden_size", None), decoder.hidden_size)
        return self
