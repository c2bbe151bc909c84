"""Finding the TensorBoard writer among the trainer's loggers."""

from __future__ import annotations

from lightning.pytorch import Trainer
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
