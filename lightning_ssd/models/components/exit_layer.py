"""Choosing the draft exit layer n (paper appendix A.4).

C_l = max_v softmax(g(x_l)) is the early-exit confidence at layer l, and r(I, l) = C_l - lambda * l trades it
against the cost of going deeper (lambda = 1/L by default: the per-layer share of the decoder's cost). The
chosen layer maximises the mean reward over the validation split, for l in [L/2] = {1, ..., floor(L/2)}.
"""

from __future__ import annotations

import torch

from lightning_ssd.backbones.vlm import DecoderPrompt, SplitVLM


def candidate_layers(num_layers: int) -> range:
    """[L/2] = 1..floor(L/2), at least layer 1."""
    return range(1, max(1, num_layers // 2) + 1)


def mean_confidence(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean over each sample's masked positions of max_v softmax(logits); logits (B, T, V), mask (B, T)."""
    confidence = torch.softmax(logits.float(), dim=-1).amax(-1)  # (B, T)
    mask = mask.float()
    return (confidence * mask).sum(-1) / mask.sum(-1).clamp(min=1)


@torch.no_grad()
def layer_confidences(vlm: SplitVLM, prompt: DecoderPrompt, targets: torch.Tensor) -> torch.Tensor:
    """(B, |[L/2]|) mean over each sample's target positions of C_l, l in [L/2].

    Args:
        vlm: the backbone.
        prompt: teacher-forced decoder inputs (`SplitVLM.teacher_forced`).
        targets: (B, T) next-token targets, -100 where no token is predicted.
    """
    dec = vlm.decoder
    layers = candidate_layers(dec.num_layers)
    states = dec.layer_states(prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask, prompt.encoder)
    mask = targets != -100  # (B, T)
    return torch.stack([mean_confidence(dec.head(states[layer]), mask) for layer in layers], dim=-1)


def layer_rewards(mean_confidence: torch.Tensor, num_layers: int, lam: float | None = None) -> torch.Tensor:
    """R(l) = mean C_l - lambda * l for l in [L/2]; `mean_confidence` (|[L/2]|,) is C_l averaged over samples."""
    layers = candidate_layers(num_layers)
    if mean_confidence.shape != (len(layers),):
        raise ValueError(f"expected {len(layers)} confidences (layers {layers.start}..{layers.stop - 1}) for L="
                         f"{num_layers}, got shape {tuple(mean_confidence.shape)}")
    lam = 1.0 / num_layers if lam is None else lam
    return mean_confidence - lam * torch.tensor(list(layers), dtype=mean_confidence.dtype)


def choose_exit_layer(mean_confidence: torch.Tensor, num_layers: int, lam: float | None = None) -> int:
    """n = argmax_{l in [L/2]} (mean C_l - lambda * l); ties go to the shallower layer."""
    rewards = layer_rewards(mean_confidence, num_layers, lam)
    return int(torch.argmax(rewards)) + 1
