"""Stage 1: fine-tuning the backbone for its final-layer output (paper sec. 5, eq. 1)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_ssd.backbones import load_processor, save_backbone
from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.models.base import SSDModule, TeacherForced

log = logging.getLogger(__name__)


def vision_encoder(vlm: SplitVLM) -> tuple[nn.Module, ...]:
    """The image encoder's modules that BLIP-2 and LLaVA keep frozen (ViT / CLIP tower), not the Q-Former or
    projector.

    Qwen2.5-VL's vision model holds its projector (the patch merger): the ViT is its patch embedding and blocks,
    and the merger trains, as Qwen's own fine-tuning recipes do.
    """
    if vlm.family in ("llava", "llava-next"):
        return (vlm.model.model.vision_tower,)
    if vlm.family == "qwen2.5-vl":
        visual = vlm.model.model.visual
        return visual.patch_embed, visual.blocks
    return (vlm.model.vision_model,)


def freeze(modules: tuple[nn.Module, ...], weights: bool = False) -> None:
    """Puts `modules` in eval mode and, with `weights`, stops their gradients."""
    for module in modules:
        module.eval()
        if weights:
            module.requires_grad_(False)


def export_backbone(module: SSDModule, dirpath: str | None) -> Path:
    """Writes the module's backbone (with the processor it was loaded with) to `dirpath`, on global rank zero.

    Defaults to `<trainer.default_root_dir>/backbone`, the folder the next stage's `backbone` points at.
    """
    trainer = module.trainer
    target = Path(dirpath) if dirpath else Path(trainer.default_root_dir) / "backbone"
    if trainer.is_global_zero:
        save_backbone(module.vlm, load_processor(module.hparams.backbone), target)
        log.info("backbone written to %s", target)
    trainer.strategy.barrier("export_backbone")
    return target


class FineTuneModule(SSDModule):
    """Fine-tunes the whole VLM with the cross-entropy of its final layer, L = CE(o_L, y*) (eq. 1).

    The vision encoder stays frozen by default, as in BLIP-2; the Q-Former/projector and the LLM train. At the end
    of `fit` the backbone is written with `save_backbone` for the imitation stage to load.

    Args:
        backbone: preset name or checkpoint folder to fine-tune.
        freeze_vision: keep the image encoder (ViT / CLIP tower) frozen.
        export_dir: where the fine-tuned backbone is written at the end of fit; None means
            `<trainer.default_root_dir>/backbone`.
        **kwargs: shared arguments of `SSDModule` (n, draft, max_new_tokens, eval_modes, lr, ...).
    """

    def __init__(self, backbone: str, freeze_vision: bool = True, export_dir: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if freeze_vision:
            freeze(vision_encoder(self.vlm), weights=True)
        self.freeze_vision = freeze_vision
        self.train()  # backbones load in eval mode; Lightning keeps a module's mode, so dropout would stay off

    def train(self, mode: bool = True) -> FineTuneModule:
        super().train(mode)
        if self.freeze_vision:
            freeze(vision_encoder(self.vlm))
        return self

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tf = TeacherForced(self.vlm, batch)
        logits = self.vlm.decoder.head(tf.states[-1])  # (N, V)
        return {"loss": F.cross_entropy(logits.float(), tf.targets)}

    def on_train_end(self) -> None:
        export_backbone(self, self.hparams.export_dir)
