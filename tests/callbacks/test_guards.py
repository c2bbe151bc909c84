"""A NaN/inf loss stops training with a message naming the step."""

import math

import pytest
import torch

from lightning_ssd.callbacks import FiniteLossGuard
from lightning_ssd.models import ImitationModule
from tests.models.helpers import tiny_data, tiny_trainer


class BreaksAtStep(ImitationModule):
    def compute_losses(self, batch):
        losses = super().compute_losses(batch)
        if self.training and self.global_step == 2:
            losses["loss"] = losses["loss"] * math.inf
        return losses


def test_non_finite_loss_stops_before_the_update(tmp_path):
    module = BreaksAtStep("tiny-blip2-opt", n=2, lr=1e-2, warmup_steps=0)
    trainer = tiny_trainer(tmp_path, max_steps=10, limit_val_batches=0, callbacks=[FiniteLossGuard()])
    with pytest.raises(FloatingPointError, match=r"not finite \(inf\) at global step 2 \(epoch \d+, batch \d+\)"):
        trainer.fit(module, tiny_data("tiny-blip2-opt", num_train=8, batch_size=2))
    assert all(torch.isfinite(v).all() for v in module.imitation_net.state_dict().values())
    assert trainer.global_step == 2
