"""Training throughput in samples per second, to compare stages on the same data."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class TrainThroughput(Callback):
    """Logs `train/samples_per_s` (training steps only) and `train/samples_per_s_wall` (data loading included).

    Both are global figures: this process's rate times the world size. The first `warmup_batches` batches of an
    epoch are left out (allocator and dataloader start-up).

    Args:
        warmup_batches: batches skipped at the start of each epoch.
    """

    def __init__(self, warmup_batches: int = 2) -> None:
        self.warmup_batches = warmup_batches
        self._reset()

    def _reset(self) -> None:
        self._samples, self._step_s, self._wall_s, self._start = 0, 0.0, 0.0, 0.0
        self._wall_start: float | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if batch_idx < self.warmup_batches:
            return
        if self._wall_start is None:
            self._wall_start = self._start
        self._samples += batch["input_ids"].shape[0]
        self._step_s += now - self._start
        self._wall_s = now - self._wall_start

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._samples:
            return
        world = trainer.world_size
        pl_module.log("train/samples_per_s", world * self._samples / self._step_s, sync_dist=True)
        pl_module.log("train/samples_per_s_wall", world * self._samples / self._wall_s, sync_dist=True)
