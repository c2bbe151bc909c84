"""Mixed training (paper appendix C): backbone and imitation network trained together, then the backbone frozen."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lightning_ssd.errors import UsageError
from lightning_ssd.models.base import TeacherForced
from lightning_ssd.models.finetune import export_backbone, freeze, vision_encoder
from lightning_ssd.models.imitation import ImitationModule


class MixedModule(ImitationModule):
    """Joint training for `joint_epochs` epochs, then imitation-only training on the frozen backbone.

    Joint phase: L = w_full_ce * CE(o_L, y*) + L_draft, where L_draft (eqs. 2-4) also reaches the shallow layers
    and the Q-Former/projector through x_n; its targets (the deep states and p_L) stay detached, so the deep layers
    learn from the full-model cross-entropy only. From epoch `joint_epochs` on the backbone is frozen, as in
    `ImitationModule`. Checkpoints hold the whole model (the backbone changes); the backbone is written at the end
    of fit like the fine-tuning stage's. Under DDP use `strategy: ddp_find_unused_parameters_true`, since the
    backbone stops receiving gradients mid-run.

    Args:
        backbone: preset name or checkpoint folder to start from.
        n: draft exit layer, 1 <= n <= L - 1.
        joint_epochs: epochs of joint training before the backbone is frozen (0 = `ImitationModule`).
        w_full_ce: weight of the full model's cross-entropy in the joint phase.
        backbone_lr: learning rate of the backbone parameters (the imitation network uses `lr`).
        freeze_vision: keep the image encoder frozen in the joint phase too.
        export_dir: where the backbone is written at the end of fit; None means `<default_root_dir>/backbone`.
        **kwargs: arguments of `ImitationModule` and `SSDModule` (imitation, fusion, w_cs, w_kl, w_ce, lr, ...).
    """

    freezes_backbone = False

    def __init__(
        self,
        backbone: str,
        n: int,
        joint_epochs: int = 5,
        w_full_ce: float = 1.0,
        backbone_lr: float = 1e-5,
        freeze_vision: bool = True,
        export_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, n, **kwargs)
        if joint_epochs < 0:
            raise UsageError(f"model.init_args.joint_epochs must be >= 0, got {joint_epochs}")
        if freeze_vision:
            freeze(vision_encoder(self.vlm), weights=True)
        self.freeze_vision = freeze_vision
        self.train()  # the joint epochs train the backbone with its dropout, as fine-tuning does

    def train(self, mode: bool = True) -> MixedModule:
        super().train(mode)
        if self.freeze_vision:
            freeze(vision_encoder(self.vlm))
        return self

    def on_train_epoch_start(self) -> None:
        if self.current_epoch >= self.hparams.joint_epochs and not self.backbone_frozen:
            self.freeze_backbone()

    def param_groups(self) -> list[dict[str, Any]]:
        backbone = [p for p in self.vlm.parameters() if p.requires_grad]
        own = [p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("vlm.")]
        return [{"params": own}, {"params": backbone, "lr": self.hparams.backbone_lr}]

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.backbone_frozen:
            return super().compute_losses(batch)
        tf = TeacherForced(self.vlm, batch)
        full_ce = F.cross_entropy(self.vlm.decoder.head(tf.states[-1]).float(), tf.targets)
        x_i = self.imitation_net(tf.sequences[self.n])[tf.mask] if self.imitation_net.has_state else None
        draft = self.draft_losses(*self.split_states(tf), tf.targets, x_i)  # x_n keeps its gradient
        return {**draft, "loss": self.hparams.w_full_ce * full_ce + draft["loss"], "draft_loss": draft["loss"],
                "full_ce": full_ce}

    def on_train_end(self) -> None:
        export_backbone(self, self.hparams.export_dir)
