"""The draft model's training objective (paper eqs. 2-4) over teacher-forced positions.

    L_draft = w_cs * CosSim(x_I, sg(x_fused))      eq. 2, 1 - cosine similarity
            + w_kl * KL(p_I || p_L)                eq. 3, the paper's direction: sum_v p_I(v) log(p_I(v) / p_L(v))
            + w_ce * CE(g(x_I), y*)                eq. 4
            + w_anchor * KL(p_L || p_fused)        only for a trainable fusion (concat, attention)

sg() is stop-gradient. The anchor is this project's addition: it is the only signal a trainable fusion learns from,
so x_fused is pushed to decode (through the frozen final norm + head) to the full model's distribution and never
toward the imitation output. Without it, a trainable concatenation projection collapses the cosine term by moving
its target (FACTS.md); `tests/models/test_objective.py` shows both the collapse and that this objective avoids it.
The paper's ablation rows map to weights: CE (w_cs = w_kl = 0), +CS (w_kl = 0), +CS+KD (all on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_ssd.models.components.fusion import FusionKind, build_fusion


def cosine_loss(x_i: torch.Tensor, x_fused: torch.Tensor) -> torch.Tensor:
    """Eq. 2 averaged over positions: mean of 1 - cos(x_I, x_fused), both (N, D)."""
    return (1.0 - F.cosine_similarity(x_i, x_fused, dim=-1)).mean()


def draft_kl(logits_i: torch.Tensor, logits_l: torch.Tensor) -> torch.Tensor:
    """KL(p_I || p_L) of eq. 3 averaged over positions; logits (N, V). Reverse (mode-seeking) KL, as in the paper."""
    log_p_i = torch.log_softmax(logits_i.float(), dim=-1)
    log_p_l = torch.log_softmax(logits_l.float(), dim=-1)
    return (log_p_i.exp() * (log_p_i - log_p_l)).sum(-1).mean()


def distribution_kl(logits_target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_target || p) averaged over positions: forward KL, p fitted to cover the target distribution."""
    log_p_t = torch.log_softmax(logits_target.float(), dim=-1)
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p)).sum(-1).mean()


@dataclass(frozen=True)
class DraftLosses:
    """Weighted total and the unweighted terms (for logging); absent terms are None."""

    total: torch.Tensor
    cosine: torch.Tensor | None
    kl: torch.Tensor | None
    ce: torch.Tensor | None
    fusion_anchor: torch.Tensor | None

    def terms(self) -> dict[str, torch.Tensor]:
        named = {"cosine": self.cosine, "kl": self.kl, "ce": self.ce, "fusion_anchor": self.fusion_anchor}
        return {"loss": self.total, **{k: v for k, v in named.items() if v is not None}}


class ImitationObjective(nn.Module):
    """Eqs. 2-4 with switchable terms and the fusion that builds the cosine target.

    Args:
        hidden_size: width D of the backbone's residual stream.
        fusion: how x_fused is built from the last `fusion_layers` states: average, concat or attention.
        fusion_layers: how many of the last layers' states are fused (the paper uses 4).
        w_cs: weight of the cosine term (eq. 2); 0 turns it off.
        w_kl: weight of KL(p_I || p_L) (eq. 3); 0 turns it off.
        w_ce: weight of the cross-entropy to the ground truth (eq. 4); 0 turns it off.
        w_anchor: weight of KL(p_L || p_fused), which alone trains a concat/attention fusion; 0 keeps such a
            fusion frozen at its averaging initialisation.
        kl_direction: "reverse" is eq. 3's KL(p_I || p_L); "forward" is KL(p_L || p_I), the soft-label
            cross-entropy to the full model (up to its entropy) that Kangaroo and EAGLE-style drafters train on.
    """

    def __init__(
        self,
        hidden_size: int,
        fusion: FusionKind = "concat",
        fusion_layers: int = 4,
        w_cs: float = 1.0,
        w_kl: float = 1.0,
        w_ce: float = 1.0,
        w_anchor: float = 1.0,
        kl_direction: Literal["reverse", "forward"] = "reverse",
    ) -> None:
        super().__init__()
        if kl_direction not in ("reverse", "forward"):
            raise ValueError(f"kl_direction must be 'reverse' (eq. 3) or 'forward', got {kl_direction!r}")
        self.kl_direction = kl_direction
        if min(w_cs, w_kl, w_ce, w_anchor) < 0 or w_cs + w_kl + w_ce == 0:
            raise ValueError(f"loss weights must be >= 0 with at least one of w_cs, w_kl, w_ce > 0; got "
                             f"w_cs={w_cs}, w_kl={w_kl}, w_ce={w_ce}, w_anchor={w_anchor}")
        if fusion_layers < 1:
            raise ValueError(f"fusion_layers must be >= 1, got {fusion_layers}")
        self.fusion_layers = fusion_layers
        # Without the cosine term there is no target to fuse; with w_anchor = 0 a fusion keeps its averaging init.
        self.fusion = build_fusion(fusion, hidden_size, fusion_layers) if w_cs else None
        if self.fusion is not None and not w_anchor:
            self.fusion.requires_grad_(False)
        self.w_cs, self.w_kl, self.w_ce, self.w_anchor = w_cs, w_kl, w_ce, w_anchor

    @property
    def trainable_fusion(self) -> bool:
        return self.fusion is not None and any(p.requires_grad for p in self.fusion.parameters())

    def forward(
        self,
        x_i: torch.Tensor,
        deep_states: torch.Tensor,
        logits_l: torch.Tensor,
        targets: torch.Tensor,
        head: Callable[[torch.Tensor], torch.Tensor],
    ) -> DraftLosses:
        """Losses over N teacher-forced positions.

        Args:
            x_i: (N, D) imitation output I(x_n).
            deep_states: (K, N, D) states x_{L-K+1}..x_L of the frozen backbone.
            logits_l: (N, V) full-model logits g(x_L).
            targets: (N,) ground-truth next tokens y*.
            head: g, the backbone's final norm + LM head.
        """
        zero = x_i.new_zeros(())
        total, cosine, kl, ce, anchor = zero, None, None, None, None
        logits_i = head(x_i) if self.w_kl or self.w_ce else None
        if self.w_cs:
            x_fused = self.fusion(deep_states)
            cosine = cosine_loss(x_i, x_fused.detach())
            total = total + self.w_cs * cosine
            if self.trainable_fusion:
                anchor = distribution_kl(logits_l, head(x_fused))
                total = total + self.w_anchor * anchor
        if self.w_kl:
            kl = draft_kl(logits_i, logits_l) if self.kl_direction == "reverse" else distribution_kl(logits_l, logits_i)
            total = total + self.w_kl * kl
        if self.w_ce:
            ce = F.cross_entropy(logits_i.float(), targets)
            total = total + self.w_ce * ce
        return DraftLosses(total, cosine, kl, ce, anchor)
