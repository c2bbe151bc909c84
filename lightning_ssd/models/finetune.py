"""Stage 1: fine-tuning the backbone for its final-layer output (paper sec. 5, eq. 1)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_ssd.backbones import load_processor, save_backbone
from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.errors import UsageError
from lightning_ssd.models.base import SSDModule, TeacherForced
from lightning_ssd.models.components.layerskip import (
    LayerSkipRecipe,
    dropout_rates,
    early_exit_losses,
    exit_cross_entropies,
    exit_loss_weights,
    finite_total_steps,
    sample_keep_mask,
)

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

    With `layerskip`, training follows LayerSkip's recipe instead (`components/layerskip.py`): layers are skipped
    per sample with a rate that grows with depth, and the loss is the normalised sum of every enabled exit's
    cross-entropy through the model's own final norm and head (logged as `train/exit_ce_<n>`, n the exit layer,
    x_n -> head, as SSD's n). Evaluation runs the whole model: `val/loss` stays the final layer's cross-entropy, so
    that the checkpoint monitor compares runs with and without the recipe alike, and `val/exit_ce_<n>` is logged for
    every n. Drafting after it is the plain early exit at n (decoding mode "ssd" without an imitation network).

    Args:
        backbone: preset name or checkpoint folder to fine-tune.
        freeze_vision: keep the image encoder (ViT / CLIP tower) frozen.
        export_dir: where the fine-tuned backbone is written at the end of fit; None means
            `<trainer.default_root_dir>/backbone`.
        layerskip: LayerSkip's layer dropout and early-exit losses; None is plain fine-tuning (eq. 1).
        **kwargs: shared arguments of `SSDModule` (n, draft, max_new_tokens, eval_modes, lr, ...).
    """

    def __init__(self, backbone: str, freeze_vision: bool = True, export_dir: str | None = None,
                 layerskip: LayerSkipRecipe | None = None, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if freeze_vision:
            freeze(vision_encoder(self.vlm), weights=True)
        self.freeze_vision = freeze_vision
        self.layerskip = layerskip
        if layerskip is not None:
            if self.vlm.decoder.num_layers < 2:
                raise UsageError(f"model.init_args.layerskip needs a backbone of at least 2 decoder layers; "
                                 f"{backbone!r} has {self.vlm.decoder.num_layers}")
            # plain values, so that hparams.yaml and LightningCLI's --ckpt_path read them back like any other argument
            self.hparams["layerskip"] = asdict(layerskip)
        self._schedule_steps = 1  # T of the LayerSkip schedules, set when training starts
        self.train()  # backbones load in eval mode; Lightning keeps a module's mode, so dropout would stay off

    def train(self, mode: bool = True) -> FineTuneModule:
        super().train(mode)
        if self.freeze_vision:
            freeze(vision_encoder(self.vlm))
        return self

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.layerskip is not None:
            return self.layerskip_losses(batch)
        tf = TeacherForced(self.vlm, batch)
        logits = self.vlm.decoder.head(tf.states[-1])  # (N, V)
        return {"loss": F.cross_entropy(logits.float(), tf.targets)}

    def layerskip_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Training: eq. 5 under layer dropout at step t = global_step. Evaluation: no dropout, "loss" is the final
        layer's cross-entropy (eq. 1) and every exit's cross-entropy is reported."""
        recipe, L, head = self.layerskip, self.vlm.decoder.num_layers, self.vlm.decoder.head
        if not self.training:
            tf = TeacherForced(self.vlm, batch)
            ces = exit_cross_entropies(tf.states, tf.targets, head, range(1, L + 1))
            return {"loss": ces[L], **{f"exit_ce_{n}": ce for n, ce in ces.items()}}
        t, T = self.global_step, self._schedule_steps
        rates = dropout_rates(recipe, L, t, T)
        keep = sample_keep_mask(rates, batch["input_ids"].shape[0], self.device) if any(rates) else None
        tf = TeacherForced(self.vlm, batch, keep=keep)
        loss, ces = early_exit_losses(tf.states, tf.targets, head, exit_loss_weights(recipe, L, t, T))
        return {"loss": loss, **{f"exit_ce_{n}": ce for n, ce in ces.items()}}

    def on_train_start(self) -> None:
        if self.layerskip is not None and self.layerskip.needs_total_steps:
            self._schedule_steps = finite_total_steps(self.trainer.estimated_stepping_batches)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # as SSDModule's, with the per-exit terms (up to L of them) kept off the progress bar
        losses = self.compute_losses(batch)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", losses["loss"].detach(), prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items() if k != "loss"}, batch_size=size)
        return losses["loss"]

    def on_train_end(self) -> None:
        export_backbone(self, self.hparams.export_dir)
