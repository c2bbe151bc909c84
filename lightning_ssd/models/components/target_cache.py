"""Frozen-backbone targets kept across epochs, so later epochs skip the backbone forward entirely."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class CachedBatch:
    """What the imitation losses need of one batch.

    Attributes:
        x_n: (N, D) shallow states at the target positions.
        deep: (K, N, D) the last K layers' states there.
        targets: (N,) ground-truth next tokens.
        sequences: (B, T, D) shallow states over whole (right-padded) sequences, for an imitation net with
            attention; None when they were not cached.
        mask: (B, T) the target positions within `sequences` (row-major order matches `x_n`).
    """

    x_n: torch.Tensor
    deep: torch.Tensor
    targets: torch.Tensor
    sequences: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class TargetCache:
    """Per-sample (x_n, deep states, targets) at the sample's target positions, stored on the CPU; optionally also
    the sample's whole x_n sequence up to its last target position (what an attention imitation net reads).

    Valid only while the backbone is frozen and a sample id always stands for the same pixels and text (no random
    augmentation). Memory: (1 + K) * N_i * D values per sample, N_i its target tokens (K = fused layers), plus
    T_i * D with sequences.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, CachedBatch] = {}  # one sample each, on the CPU

    def __len__(self) -> int:
        return len(self._entries)

    def has_all(self, sample_ids: Sequence[Hashable], sequences: bool = False) -> bool:
        return all(i in self._entries and (not sequences or self._entries[i].sequences is not None)
                   for i in sample_ids)

    def put(
        self,
        sample_ids: Sequence[Hashable],
        counts: Sequence[int],
        x_n: torch.Tensor,
        deep: torch.Tensor,
        targets: torch.Tensor,
        sequences: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Splits batch tensors x_n (N, D), deep (K, N, D), targets (N,) into samples of `counts` positions;
        `sequences` (B, T, D) with `mask` (B, T) are kept per sample up to its last target position."""
        parts = zip(sample_ids, x_n.split(counts), deep.split(counts, dim=1), targets.split(counts), strict=True)
        for row, (sid, x, d, t) in enumerate(parts):
            entry = CachedBatch(x.cpu(), d.cpu(), t.cpu())
            if sequences is not None and mask is not None:
                end = int(mask[row].nonzero().max()) + 1 if mask[row].any() else 0
                entry.sequences, entry.mask = sequences[row, :end].cpu(), mask[row, :end].cpu()
            self._entries[sid] = entry

    def get(self, sample_ids: Sequence[Hashable], device: torch.device) -> CachedBatch:
        """The batch of `sample_ids`, in order, on `device` (sequences right-padded with zeros when cached)."""
        parts = [self._entries[i] for i in sample_ids]
        batch = CachedBatch(
            torch.cat([p.x_n for p in parts]).to(device),
            torch.cat([p.deep for p in parts], dim=1).to(device),
            torch.cat([p.targets for p in parts]).to(device),
        )
        if all(p.sequences is not None for p in parts):
            batch.sequences = torch.nn.utils.rnn.pad_sequence([p.sequences for p in parts], batch_first=True).to(device)
            batch.mask = torch.nn.utils.rnn.pad_sequence([p.mask for p in parts], batch_first=True).to(device)
        return batch
