"""Choosing the draft exit layer n (paper appendix A.4).

C_l = max_v softmax(g(x_l)) is the early-exit confidence at layer l, and r(I, l) = C_l - lambda * l trades it
against the cost of going deeper (lambda = 1/L by default: the per-layer share of the decoder's cost). The
chosen layer maximises the mean reward over the validation split, for l in [L/2] = {1, ..., floor(L/2)}.

That argmax is the paper's rule ("argmax"). When confidence grows by about lambda per layer, neighbouring layers'
rewards differ by less than the validation sample can resolve and the argmax is decided by noise. The "one_se" rule
takes the shallowest layer whose mean reward is within one standard error of the best layer's (the standard error of
the paired per-sample difference), so it only goes deeper for a gain the validation split shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

Rule = Literal["argmax", "one_se", "speedup"]
# "speedup" predicts each layer's decode speedup from its measured agreement with the full model (speedup_rule.py)
RULES: tuple[str, ...] = ("argmax", "one_se", "speedup")


def candidate_layers(num_layers: int) -> range:
    """[L/2] = 1..floor(L/2), at least layer 1."""
    return range(1, max(1, num_layers // 2) + 1)


def mean_confidence(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean over each sample's masked positions of max_v softmax(logits); logits (B, T, V), mask (B, T)."""
    confidence = torch.softmax(logits.float(), dim=-1).amax(-1)  # (B, T)
    mask = mask.float()
    return (confidence * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def exit_confidences(head: Callable[[torch.Tensor], torch.Tensor], states: list[torch.Tensor], mask: torch.Tensor,
                     layers: range) -> torch.Tensor:
    """(B, |layers|) mean C_l over each sample's masked positions, from teacher-forced states [x_0, ..., x_L]."""
    return torch.stack([mean_confidence(head(states[layer]), mask) for layer in layers], dim=-1)


def layer_rewards(mean_confidence: torch.Tensor, num_layers: int, lam: float | None = None,
                  layers: range | None = None) -> torch.Tensor:
    """R(l) = mean C_l - lambda * l for l in `layers` (default [L/2]); `mean_confidence` (|layers|,) is C_l
    averaged over samples."""
    layers = layers or candidate_layers(num_layers)
    if mean_confidence.shape != (len(layers),):
        raise ValueError(f"expected {len(layers)} confidences (layers {layers.start}..{layers.stop - 1}) for L="
                         f"{num_layers}, got shape {tuple(mean_confidence.shape)}")
    lam = 1.0 / num_layers if lam is None else lam
    return mean_confidence - lam * torch.tensor(list(layers), dtype=mean_confidence.dtype)


def choose_exit_layer(mean_confidence: torch.Tensor, num_layers: int, lam: float | None = None,
                      layers: range | None = None) -> int:
    """n = argmax_{l in layers} (mean C_l - lambda * l), layers [L/2] by default; ties go to the shallower layer."""
    layers = layers or candidate_layers(num_layers)
    return layers[int(torch.argmax(layer_rewards(mean_confidence, num_layers, lam, layers)))]


@dataclass(frozen=True)
class ConfidenceStats:
    """Sums over validation samples of the per-sample confidences c = (C_1, ..., C_K), K = |[L/2]|.

    `total` (K,) is sum c and `outer` (K, K) is sum c c^T: with `count` they give the mean of every layer's reward and
    the variance of every paired difference, and they add up across batches and processes (a sum all-reduce).
    """

    count: int
    total: torch.Tensor
    outer: torch.Tensor

    @classmethod
    def of(cls, confidences: torch.Tensor) -> ConfidenceStats:
        """Statistics of (B, K) per-sample confidences."""
        c = confidences.double()
        return cls(c.shape[0], c.sum(0), c.T @ c)

    def __add__(self, other: ConfidenceStats) -> ConfidenceStats:
        return ConfidenceStats(self.count + other.count, self.total + other.total, self.outer + other.outer)

    @property
    def mean(self) -> torch.Tensor:
        """(K,) mean C_l over the samples."""
        return self.total / max(self.count, 1)

    def diff_stderr(self, ref: int) -> torch.Tensor:
        """(K,) standard error of mean(C_ref - C_l) (0-based `ref`); lambda * l is a constant and adds nothing."""
        n = self.count
        if n < 2:
            return torch.zeros_like(self.total)
        mean = self.mean
        cov = (self.outer - n * torch.outer(mean, mean)) / (n - 1)
        var = cov[ref, ref] + cov.diagonal() - 2 * cov[ref]
        return (var.clamp(min=0) / n).sqrt()


def check_rule(rule: str, setting: str = "rule") -> None:
    """`rule` is one of RULES; `setting` names it in the error."""
    if rule not in RULES:
        raise ValueError(f"{setting} must be one of {list(RULES)}, got {rule!r}")


@dataclass(frozen=True)
class LayerChoice:
    """The chosen draft exit layer `n` and what it was chosen from (1-based layers, tensors over [L/2]).

    Attributes:
        n: the chosen layer.
        best: the layer of the highest mean reward (the paper's argmax).
        rewards: mean reward of every layer.
        gap: rewards[best] - rewards, >= 0.
        stderr: standard error of that gap (of the paired per-sample difference).
    """

    n: int
    best: int
    rewards: torch.Tensor
    gap: torch.Tensor
    stderr: torch.Tensor


def select_exit_layer(stats: ConfidenceStats, num_layers: int, lam: float | None = None,
                      rule: Rule = "argmax") -> LayerChoice:
    """The draft exit layer under `rule`: "argmax" (the paper's) or "one_se" (see the module docstring); the
    "speedup" rule needs agreements, not rewards (`speedup_rule.choose_by_speedup`)."""
    check_rule(rule)
    if rule == "speedup":
        raise ValueError("the speedup rule chooses from layer agreements: use speedup_rule.choose_by_speedup")
    best = choose_exit_layer(stats.mean.float(), num_layers, lam)
    rewards = layer_rewards(stats.mean, num_layers, lam)
    gap = rewards[best - 1] - rewards
    stderr = stats.diff_stderr(best - 1)
    n = best if rule == "argmax" else int((gap <= stderr).nonzero().flatten()[0]) + 1
    return LayerChoice(n, best, rewards, gap, stderr)
