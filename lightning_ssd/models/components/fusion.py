"""Multi-level representation fusion: the imitation target x_fused built from the last layers' states (sec. 5).

Every fusion takes the pre-norm residual states of the last `num_layers` layers, stacked as (K, B, T, D) in layer
order (x_{L-K+1} .. x_L), and returns x_fused (B, T, D). All three start as the plain average of the states:

  - average: the mean, no parameters;
  - concat: the states concatenated along the feature axis and mapped back to D by a linear layer, initialised to
    [I/K, ..., I/K] (the average);
  - attention: per position, softmax attention over the K states with x_L as the query (keys projected, values
    the states themselves, so x_fused stays a convex combination in the residual space); the query and key
    projections start at zero, which gives uniform weights.

A trainable fusion must not learn from the cosine term: moving the target toward the imitation output would
drive eq. 2 to ~0 without the draft improving (FACTS.md). `ImitationObjective` therefore detaches x_fused in the
cosine term and trains the fusion parameters only through an anchor that ties g(x_fused) to the full model's
distribution.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

FusionKind = Literal["average", "concat", "attention"]
FUSION_KINDS: tuple[str, ...] = ("average", "concat", "attention")


class AverageFusion(nn.Module):
    """x_fused = mean of the K states."""

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return states.mean(0)


class ConcatFusion(nn.Module):
    """x_fused = W [x_{L-K+1}; ...; x_L] + b, W (D, K*D) initialised to the average."""

    def __init__(self, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.proj = nn.Linear(num_layers * hidden_size, hidden_size)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(hidden_size).repeat(1, num_layers) / num_layers)
            self.proj.bias.zero_()

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        K = states.shape[0]
        return self.proj(torch.cat([states[k] for k in range(K)], dim=-1))  # (B, T, K*D) -> (B, T, D)


class AttentionPoolFusion(nn.Module):
    """x_fused = sum_k softmax_k(q(x_L) . k(x_k) / sqrt(D)) x_k, uniform weights at initialisation."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.key.weight)
        self.scale = 1.0 / math.sqrt(hidden_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        q = self.query(states[-1])  # (B, T, D): the last layer asks
        k = self.key(states)  # (K, B, T, D)
        weights = torch.softmax((k * q).sum(-1) * self.scale, dim=0)  # (K, B, T)
        return (weights.unsqueeze(-1) * states).sum(0)


def build_fusion(kind: FusionKind, hidden_size: int, num_layers: int = 4) -> nn.Module:
    """The fusion module of `kind` for K = `num_layers` states of width `hidden_size`."""
    if kind == "average":
        return AverageFusion()
    if kind == "concat":
        return ConcatFusion(hidden_size, num_layers)
    if kind == "attention":
        return AttentionPoolFusion(hidden_size)
    raise ValueError(f"fusion must be one of {', '.join(FUSION_KINDS)}, got {kind!r}")
