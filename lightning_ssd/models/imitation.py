"""Stage 2: training the imitation network on a frozen backbone (paper sec. 5, eqs. 2-4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import torch

from lightning_ssd.decoding.checks import check_trained_exit_layer
from lightning_ssd.errors import UsageError
from lightning_ssd.models.base import SSDModule, TeacherForced
from lightning_ssd.models.components.fingerprint import (
    BackboneMismatchError,
    backbone_fingerprint,
    check_fingerprint,
)
from lightning_ssd.models.components.fusion import FusionKind
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.models.components.objective import ImitationObjective
from lightning_ssd.models.components.target_cache import TargetCache

ImitationFactory = Callable[[int], ImitationNetwork]
_BACKBONE_PREFIX = "vlm."


class ImitationModule(SSDModule):
    """Trains x_I = I(x_n) to imitate the deep layers of a frozen backbone; only I (and a fusion) learn.

    The backbone stays in eval mode with `requires_grad=False` and runs under `torch.no_grad`, so each step costs
    one inference forward plus the small network's forward/backward. Checkpoints hold only the trainable weights and
    a reference to the backbone (its path and fingerprint); loading one against another backbone raises
    `BackboneMismatchError`.

    Args:
        backbone: the fine-tuned backbone: a checkpoint folder from the fine-tuning stage, or a preset.
        n: draft exit layer: I reads x_n, 1 <= n <= L - 1.
        imitation: the network class and its arguments, without `hidden_size` (taken from the backbone); None is
            the paper's choice, `ImitationNetwork` with two linear layers and a layer norm.
        fusion: how the cosine target is built from the last `fusion_layers` states: average, concat (the paper's
            choice) or attention.
        fusion_layers: how many of the deepest states are fused (4 in the paper).
        w_cs: weight of the cosine term (eq. 2); 0 turns it off.
        w_kl: weight of KL(p_I || p_L) (eq. 3); 0 turns it off.
        w_ce: weight of the cross-entropy to the ground truth (eq. 4); 0 turns it off.
        w_anchor: weight of KL(p_L || p_fused), the only signal a concat/attention fusion learns from (see
            `objective.py`); 0 freezes such a fusion at its averaging initialisation.
        kl_direction: "reverse" (eq. 3, the paper's KL(p_I || p_L)) or "forward" (KL(p_L || p_I), Kangaroo's).
        cache_targets: keep each training sample's frozen-backbone states (x_n and the fused layers' states) in CPU
            memory after its first epoch, so later epochs skip the backbone; needs samples that are the same every
            epoch (no random augmentation) and (1 + fusion_layers) * D floats per target token of memory.
        **kwargs: shared arguments of `SSDModule` (draft, max_new_tokens, eval_modes, lr, ...).
    """

    freezes_backbone = True

    def __init__(
        self,
        backbone: str,
        n: int,
        imitation: ImitationFactory | None = None,
        fusion: FusionKind = "concat",
        fusion_layers: int = 4,
        w_cs: float = 1.0,
        w_kl: float = 1.0,
        w_ce: float = 1.0,
        w_anchor: float = 1.0,
        kl_direction: Literal["reverse", "forward"] = "reverse",
        cache_targets: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, n=n, **kwargs)
        D, L = self.vlm.decoder.hidden_size, self.vlm.decoder.num_layers
        if not 1 <= fusion_layers <= L:
            raise UsageError(f"model.init_args.fusion_layers={fusion_layers} must be in [1, L={L}]")
        self.fingerprint = backbone_fingerprint(self.vlm)
        self.backbone_frozen = False
        self.imitation_net = (imitation or ImitationNetwork)(D)
        self.spec = replace(self.spec, imitation=self.imitation_net)
        self.objective = ImitationObjective(D, fusion, fusion_layers, w_cs, w_kl, w_ce, w_anchor, kl_direction)
        self.target_cache = TargetCache() if cache_targets else None
        if self.freezes_backbone:
            self.freeze_backbone()

    def freeze_backbone(self) -> None:
        self.vlm.requires_grad_(False)
        self.vlm.eval()
        self.backbone_frozen = True

    def train(self, mode: bool = True) -> ImitationModule:
        super().train(mode)
        if self.backbone_frozen:
            self.vlm.eval()  # no dropout in the teacher: its targets must be the deployed model's
        return self

    def draft_losses(
        self, x_n: torch.Tensor, deep: torch.Tensor, targets: torch.Tensor, x_i: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Eqs. 2-4 from x_n (N, D), the deepest states (K, N, D) and targets (N,); deep states carry no gradient.

        `x_i` is I(x_n) when the caller computed it over whole sequences (an imitation net with attention).
        """
        with torch.no_grad():
            logits_l = self.vlm.decoder.head(deep[-1])  # (N, V)
        x_i = self.imitation_net(x_n) if x_i is None else x_i
        losses = self.objective(x_i, deep, logits_l, targets, self.vlm.decoder.head)
        return losses.terms()

    def split_states(self, tf: TeacherForced) -> tuple[torch.Tensor, torch.Tensor]:
        """x_n (N, D) and the last `fusion_layers` states stacked (K, N, D), the latter detached."""
        K = self.objective.fusion_layers
        return tf.states[self.n], torch.stack(tf.states[len(tf.states) - K :]).detach()

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        # An attention imitation net reads the whole causal prefix: it runs over (B, T, D) sequences of x_n, and
        # its output is then kept at the target positions.
        attends = self.imitation_net.has_state
        cache = self.target_cache if self.training else None
        ids = batch["sample_ids"]
        if cache is not None and cache.has_all(ids, sequences=attends):
            cached = cache.get(ids, self.device)
            x_i = self.imitation_net(cached.sequences)[cached.mask] if attends else None
            return self.draft_losses(cached.x_n, cached.deep, cached.targets, x_i)
        with torch.no_grad():
            tf = TeacherForced(self.vlm, batch)
        x_n, deep = self.split_states(tf)
        if cache is not None:
            sequences = (tf.sequences[self.n], tf.mask) if attends else (None, None)
            cache.put(ids, tf.counts, x_n, deep, tf.targets, *sequences)
        x_i = self.imitation_net(tf.sequences[self.n])[tf.mask] if attends else None
        return self.draft_losses(x_n, deep, tf.targets, x_i)

    # -- checkpoints: trainable weights + a reference to the backbone -------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.freezes_backbone:
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                        if not k.startswith(_BACKBONE_PREFIX)}
        checkpoint["backbone"] = {"path": self.hparams.backbone, "fingerprint": self.fingerprint, "n": self.n}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("backbone")
        if saved is None:
            raise BackboneMismatchError(
                f"this checkpoint has no 'backbone' entry: it was not written by {type(self).__name__}. Load an "
                "imitation-stage checkpoint (its state holds only the imitation network and fusion weights)"
            )
        check_fingerprint(saved["fingerprint"], self.fingerprint, saved["path"], self.hparams.backbone)
        check_trained_exit_layer(self.n, saved["n"], self.spec.setting("n"), "this checkpoint's imitation network",
                                 BackboneMismatchError)
        expected = {k for k in self.state_dict() if not (self.freezes_backbone and k.startswith(_BACKBONE_PREFIX))}
        found = set(checkpoint["state_dict"])
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        if missing or unexpected:
            raise KeyError(
                f"checkpoint weights do not match this {type(self).__name__} (missing: {missing[:5]}, unexpected: "
                f"{unexpected[:5]}); the imitation/fusion settings (model.init_args.imitation, fusion, "
                "fusion_layers) must be those the checkpoint was trained with"
            )
        if self.freezes_backbone:  # the backbone just proved identical: complete the state for a strict load
            checkpoint["state_dict"].update({k: v for k, v in self.state_dict().items()
                                             if k.startswith(_BACKBONE_PREFIX)})
