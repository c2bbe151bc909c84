"""On a CUDA device: fine-tuning under FSDP in bf16-mixed precision, which Lightning refuses on CPU.

Skipped without a GPU (tests/conftest.py); run with `pytest -m gpu` on a machine that has one.
"""

import pytest
import torch

from lightning_ssd.models import FineTuneModule
from tests.models.helpers import tiny_data, tiny_trainer


@pytest.mark.gpu
def test_finetune_fits_under_fsdp_in_bf16_mixed(tmp_path):
    module = FineTuneModule("tiny-llava", n=2, max_new_tokens=6, export_dir=str(tmp_path / "backbone"))
    trainer = tiny_trainer(tmp_path, accelerator="gpu", devices=1, strategy="fsdp", precision="bf16-mixed",
                           max_steps=3, limit_val_batches=1)
    before = {k: v.detach().clone() for k, v in module.state_dict().items() if "language_model" in k}
    trainer.fit(module, tiny_data("tiny-llava", task="caption"))
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])
    after = module.state_dict()
    assert any(not torch.equal(before[k], after[k].to(before[k].device)) for k in before)  # the decoder trained
    assert metrics["val/ssd_identical"].item() == 1.0
