"""Stopping a run whose loss is no longer a finite number, with a message that says where it happened."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class FiniteLossGuard(Callback):
    """Raises `FloatingPointError` before the backward pass of a NaN/inf training loss, naming the step.

    The check runs before the optimiser can write non-finite values into the weights, so the last checkpoint and
    the weights in memory stay usable. Under DDP the decision is shared across ranks, so every rank stops together.
    """

    def __init__(self) -> None:
        self._batch_idx = -1

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        local_bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(local_bad, all=False):
            value = f"{loss.item()}" if local_bad else "finite here, non-finite on another rank"
            raise FloatingPointError(
                f"training loss is not finite ({value}) at global step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}, batch {self._batch_idx}); training stopped before the weights were "
                "updated. Lower model.init_args.lr or check this batch's data; resume with --ckpt_path last"
            )
