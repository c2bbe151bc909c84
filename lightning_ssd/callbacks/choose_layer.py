"""Choosing the draft exit layer n on the validation split (paper appendix A.4) and writing it for the next stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_ssd.models.components.exit_layer import (
    candidate_layers,
    choose_exit_layer,
    layer_confidences,
    layer_rewards,
)

log = logging.getLogger(__name__)


class ChooseLayerCallback(Callback):
    """Measures C_l = max softmax(g(x_l)) for l in 1..L/2 over validation batches and picks n = argmax C_l - lambda*l.

    At the end of each validation epoch (sanity check excluded) it logs `val/chosen_n` and writes a config fragment
    that the next stage adds after its own config:

        python -m lightning_ssd fit --config experiments/synthetic/imitation.yaml --config <output>

    Args:
        output: YAML file to write (`model: init_args: n: ...`, with the confidences and rewards as comments);
            None means `<trainer.default_root_dir>/chosen_n.yaml`.
        lam: cost per layer lambda; None means 1/L.
    """

    def __init__(self, output: str | None = None, lam: float | None = None) -> None:
        self.output = output
        self.lam = lam
        self._sum: torch.Tensor | None = None
        self._count = 0

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._sum, self._count = None, 0

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        vlm = pl_module.vlm
        with torch.no_grad():
            prompt, targets = vlm.teacher_forced(batch["pixel_values"], batch["input_ids"], batch["attention_mask"],
                                                 batch["labels"])
            keep = (targets != -100).any(-1)
            confidences = layer_confidences(vlm, prompt, targets)[keep].sum(0)  # (|[L/2]|,)
        self._sum = confidences if self._sum is None else self._sum + confidences
        self._count += int(keep.sum())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        L = pl_module.vlm.decoder.num_layers
        total = self._sum if self._sum is not None else torch.zeros(len(candidate_layers(L)), device=pl_module.device)
        total = trainer.strategy.reduce(total.double(), reduce_op="sum")
        count = int(trainer.strategy.reduce(torch.tensor(float(self._count), device=pl_module.device), "sum"))
        if count == 0:
            raise ValueError("ChooseLayerCallback: no validation sample has a target; choosing n needs the "
                             "validation split with its references (teacher forcing)")
        mean = (total / count).float().cpu()
        n = choose_exit_layer(mean, L, self.lam)
        pl_module.log("val/chosen_n", float(n), sync_dist=True)
        if trainer.is_global_zero:
            self._write(trainer, n, L, mean, layer_rewards(mean, L, self.lam), count)

    def _write(self, trainer: Trainer, n: int, L: int, mean: torch.Tensor, rewards: torch.Tensor, count: int) -> None:
        path = Path(self.output) if self.output else Path(trainer.default_root_dir) / "chosen_n.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        lam = f"{self.lam}" if self.lam is not None else "1/L"
        rows = [f"#   l={layer}: C_l={c:.4f} reward={r:.4f}" for layer, c, r in
                zip(candidate_layers(L), mean.tolist(), rewards.tolist(), strict=True)]
        text = "\n".join([f"# draft exit layer chosen on {count} validation samples (appendix A.4, lambda={lam})",
                          *rows, "model:", "  init_args:", f"    n: {n}", ""])
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        log.info("chosen draft exit layer n=%d written to %s", n, path)
