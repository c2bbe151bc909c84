"""Frozen-backbone targets kept across epochs, so later epochs skip the backbone forward entirely."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


class TargetCache:
    """Per-sample (x_n, deep states, targets) at the sample's target positions, stored on the CPU.

    Valid only while the backbone is frozen and a sample id always stands for the same pixels and text (no random
    augmentation). Memory: (1 + K) * N_i * D values per sample, N_i its target tokens (K = fused layers).
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def has_all(self, sample_ids: Sequence[Hashable]) -> bool:
        return all(i in self._entries for i in sample_ids)

    def put(
        self,
        sample_ids: Sequence[Hashable],
        counts: Sequence[int],
        x_n: torch.Tensor,
        deep: torch.Tensor,
        targets: torch.Tensor,
    ) -> None:
        """Splits batch tensors x_n (N, D), deep (K, N, D), targets (N,) into samples of `counts` positions."""
        for sid, x, d, t in zip(sample_ids, x_n.split(counts), deep.split(counts, dim=1), targets.split(counts),
                                   strict=True):
            self._entries[sid] = (x.cpu(), d.cpu(), t.cpu())

    def get(
        self, sample_ids: Sequence[Hashable], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch tensors of `sample_ids`, in order, on `device`."""
        parts = [self._entries[i] for i in sample_ids]
        x_n = torch.cat([p[0] for p in parts]).to(device)
        deep = torch.cat([p[1] for p in parts], dim=1).to(device)
        targets = torch.cat([p[2] for p in parts]).to(device)
        return x_n, deep, targets
