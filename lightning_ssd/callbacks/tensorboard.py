"""Finding the TensorBoard writer among the trainer's loggers."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.tensorboard import SummaryWriter


def tensorboard_writer(trainer: Trainer, who: str) -> SummaryWriter | None:
    """The SummaryWriter of the first TensorBoardLogger, or None (with a warning naming `who`) if there is none."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    rank_zero_warn(f"{who}: no TensorBoardLogger configured (trainer.logger); nothing is written")
    return None


class EvalSummaryWriter(Callback):
    """Base of callbacks that render the module's `last_eval` summary to TensorBoard after val/test, on rank zero."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._add(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._add(trainer, pl_module, "test")

    def _add(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        summary = getattr(pl_module, "last_eval", None)
        if trainer.sanity_checking or not trainer.is_global_zero or summary is None or summary.stage != stage:
            return
        if not self.wants(pl_module, summary):
            return
        writer = tensorboard_writer(trainer, type(self).__name__)
        if writer is not None:
            self.write(writer, trainer, pl_module, summary, stage)

    def wants(self, pl_module: LightningModule, summary: Any) -> bool:
        return True

    def write(self, writer: SummaryWriter, trainer: Trainer, pl_module: LightningModule, summary: Any,
              stage: str) -> None:
        raise NotImplementedError
