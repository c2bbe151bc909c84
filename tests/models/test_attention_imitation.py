"""An imitation network with self-attention trains over whole sequences (it reads the causal prefix)."""

import torch

from lightning_ssd.data import SyntheticDataModule
from lightning_ssd.models import ImitationModule
from lightning_ssd.models.components.imitation import ImitationNetwork


def test_attention_imitation_trains_over_sequences():
    torch.manual_seed(0)
    module = ImitationModule(
        "tiny-llava", n=2, imitation=lambda D: ImitationNetwork(D, attention=True, num_heads=4), cache_targets=False
    )
    dm = SyntheticDataModule(backbone="tiny-llava", num_train=4, num_val=2, num_test=2, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module.train()
    losses = module.compute_losses(batch)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    grads = [p.grad for p in module.imitation_net.attention.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
