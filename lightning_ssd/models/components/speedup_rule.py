"""Choosing the draft exit layer n for the decode speedup it is expected to give, beside the paper's reward rule.

The paper's reward C_l - lambda * l (exit_layer.py) trades confidence against depth with a hand-set lambda. This rule
predicts the speedup itself: a_l is the measured agreement of layer l's early exit with the full model (the share of
teacher-forced target positions where argmax g(x_l) = argmax g(x_L)), taken as the per-draft acceptance rate, and
the FLOP cost model (decoding/cost.py) turns (a_l, n = l, d) into the expected speedup; n is its argmax.

a_l is the plain early exit's agreement: the imitation network trained afterwards raises it, most at shallow layers,
so the prediction is a lower bound there and the rule leans deeper than the trained draft would need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lightning_ssd.backbones.vlm import SplitVLM, vision_inputs
from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.models.components.exit_layer import ConfidenceStats, exit_confidences
from lightning_ssd.models.components.imitation import ImitationNetwork


def exit_agreements(head: Callable[[torch.Tensor], torch.Tensor], states: list[torch.Tensor], mask: torch.Tensor,
                    layers: range) -> torch.Tensor:
    """(B, |layers|) share of each sample's masked positions where layer l's exit picks the full model's token,
    from teacher-forced states [x_0, ..., x_L]."""
    mask = mask.float()  # (B, T)
    full = head(states[-1]).argmax(-1)  # (B, T)
    agree = [(head(states[layer]).argmax(-1) == full).float() for layer in layers]
    return torch.stack([(a * mask).sum(-1) / mask.sum(-1).clamp(min=1) for a in agree], dim=-1)


@torch.no_grad()
def exit_statistics(vlm: SplitVLM, batch: dict, layers: range) -> tuple[ConfidenceStats, ConfidenceStats]:
    """Each exit's mean confidence C_l and agreement with the full model over a collated batch's samples, for l in
    `layers`, from one teacher-forced pass (samples without a target are left out)."""
    prompt, targets = vlm.teacher_forced(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         labels=batch["labels"], **vision_inputs(batch))
    dec = vlm.decoder
    states = dec.layer_states(prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask, prompt.encoder)
    mask = targets != -100
    keep = mask.any(-1)
    return (ConfidenceStats.of(exit_confidences(dec.head, states, mask, layers)[keep]),
            ConfidenceStats.of(exit_agreements(dec.head, states, mask, layers)[keep]))


@dataclass(frozen=True)
class SpeedupChoice:
    """The layer of the highest predicted speedup, and every candidate's agreement and prediction."""

    n: int
    layers: tuple[int, ...]
    agreement: torch.Tensor
    predicted: torch.Tensor


def choose_by_speedup(agreement: torch.Tensor, layers: range, num_layers: int, head_cost: float,
                      imitation_cost: float, d: int) -> SpeedupChoice:
    """n = argmax_l of the cost model's speedup at acceptance a_l, exit l, d drafts per cycle (ties: shallower).

    Args:
        agreement: (|layers|,) mean agreement a_l over the validation samples.
        layers: the candidate layers, 1-based.
        num_layers: L.
        head_cost: H, the LM head's cost in layer-equivalents; imitation_cost: A, the imitation network's.
        d: drafts per cycle.
    """
    if d < 1:
        raise ValueError(f"the speedup rule needs d >= 1 drafts per cycle, got {d}")
    if agreement.shape != (len(layers),):
        raise ValueError(f"expected {len(layers)} agreements, got shape {tuple(agreement.shape)}")
    predicted = torch.tensor([CostModel(num_layers, layer, imitation_cost, head_cost).predicted_speedup(float(a), [d])
                              for layer, a in zip(layers, agreement.tolist(), strict=True)])
    n = layers[int(torch.argmax(predicted))]
    return SpeedupChoice(n, tuple(layers), agreement, predicted)


def choose_by_speedup_for(vlm: SplitVLM, agreement: torch.Tensor, layers: range, d: int) -> SpeedupChoice:
    """`choose_by_speedup` with the head's and the imitation network's costs measured on `vlm`'s decoder.

    The imitation network is trained after n is chosen, so its cost is that of the default architecture.
    """
    decoder = vlm.decoder
    param = next(decoder.parameters())
    imitation = ImitationNetwork(decoder.hidden_size).to(device=param.device, dtype=param.dtype)
    cost, _ = measure_cost_model(decoder, 1, imitation)
    return choose_by_speedup(agreement.float(), layers, decoder.num_layers, cost.H, cost.A, d)
