"""Choosing the draft exit layer n on the validation split (paper appendix A.4) and writing it for the next stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_ssd.files import atomic_write_text
from lightning_ssd.models.components.exit_layer import (
    ConfidenceStats,
    LayerChoice,
    Rule,
    candidate_layers,
    check_rule,
    select_exit_layer,
)
from lightning_ssd.models.components.speedup_rule import SpeedupChoice, choose_by_speedup_for, exit_statistics

log = logging.getLogger(__name__)


class ChooseLayerCallback(Callback):
    """Measures C_l = max softmax(g(x_l)) for l in 1..L/2 on validation batches; picks n by the reward C_l - lambda*l.

    At the end of each validation epoch (sanity check excluded) it logs `val/chosen_n` and writes a config fragment
    that the next stage adds after its own config:

        python -m lightning_ssd fit --config experiments/synthetic.yaml --config <output>

    Args:
        output: YAML file to write (`model: init_args: n: ...`, with the confidences and rewards as comments);
            None means `<trainer.default_root_dir>/chosen_n.yaml`.
        lam: cost per layer lambda; None means 1/L.
        rule: "argmax" takes the layer of the highest mean reward (the paper); "one_se" the shallowest layer whose
            mean reward is within one standard error of the highest (see `lightning_ssd.models.components.exit_layer`);
            "speedup" the layer of the highest decode speedup that the cost model predicts from the layer's measured
            agreement with the full model (`lightning_ssd.models.components.speedup_rule`), at `draft` drafts.
        draft: d per cycle of the "speedup" rule's prediction.
    """

    def __init__(self, output: str | None = None, lam: float | None = None, rule: Rule = "argmax",
                 draft: int = 6) -> None:
        check_rule(rule, "ChooseLayerCallback: rule")
        if draft < 1:
            raise ValueError(f"ChooseLayerCallback: draft must be >= 1, got {draft}")
        self.output = output
        self.lam = lam
        self.rule = rule
        self.draft = draft
        self._stats: ConfidenceStats | None = None
        self._agreement: ConfidenceStats | None = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stats = self._agreement = None

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        vlm = pl_module.vlm
        stats, agreement = exit_statistics(vlm, batch, candidate_layers(vlm.decoder.num_layers))
        self._stats = stats if self._stats is None else self._stats + stats
        self._agreement = agreement if self._agreement is None else self._agreement + agreement

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        stats = self._reduced(trainer, pl_module, self._stats)
        agreement = self._reduced(trainer, pl_module, self._agreement)
        if stats.count == 0:
            raise ValueError("ChooseLayerCallback: no validation sample has a target; choosing n needs the "
                             "validation split with its references (teacher forcing)")
        L = pl_module.vlm.decoder.num_layers
        choice = select_exit_layer(stats, L, self.lam, "argmax" if self.rule == "speedup" else self.rule)
        speed = choose_by_speedup_for(pl_module.vlm, agreement.mean, candidate_layers(L), self.draft)
        n = speed.n if self.rule == "speedup" else choice.n
        pl_module.log("val/chosen_n", float(n), sync_dist=True)
        if trainer.is_global_zero:
            self._write(trainer, choice, speed, n, L, stats)

    def _reduced(self, trainer: Trainer, pl_module: LightningModule, stats: ConfidenceStats | None
                 ) -> ConfidenceStats:
        """This epoch's statistics summed over processes."""
        K = len(candidate_layers(pl_module.vlm.decoder.num_layers))
        stats = stats or ConfidenceStats(0, torch.zeros(K, dtype=torch.float64),
                                         torch.zeros(K, K, dtype=torch.float64))
        device = pl_module.device
        count = trainer.strategy.reduce(torch.tensor(float(stats.count), device=device), reduce_op="sum")
        total = trainer.strategy.reduce(stats.total.to(device), reduce_op="sum")
        outer = trainer.strategy.reduce(stats.outer.to(device), reduce_op="sum")
        return ConfidenceStats(int(count), total.cpu(), outer.cpu())

    def _write(self, trainer: Trainer, choice: LayerChoice, speed: SpeedupChoice, n: int, L: int,
               stats: ConfidenceStats) -> None:
        path = Path(self.output) if self.output else Path(trainer.default_root_dir) / "chosen_n.yaml"
        lam = f"{self.lam}" if self.lam is not None else "1/L"
        rows = [f"#   l={layer}: C_l={c:.4f} reward={r:.4f} (best - reward = {g:.4f}, standard error {se:.4f}); "
                f"agreement {a:.4f}, predicted speedup at d={self.draft} {s:.2f}x"
                for layer, c, r, g, se, a, s in zip(candidate_layers(L), stats.mean.tolist(), choice.rewards.tolist(),
                                                    choice.gap.tolist(), choice.stderr.tolist(),
                                                    speed.agreement.tolist(), speed.predicted.tolist(), strict=True)]
        text = "\n".join([f"# draft exit layer chosen on {stats.count} validation samples (appendix A.4, "
                          f"lambda={lam}, rule={self.rule}); the highest mean reward is at l={choice.best}, the "
                          f"highest predicted speedup at l={speed.n}",
                          *rows, "model:", "  init_args:", f"    n: {n}", ""])
        atomic_write_text(path, text)
        log.info("chosen draft exit layer n=%d written to %s", n, path)
