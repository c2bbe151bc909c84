"""LayerSkip's training recipe (Elhoushi et al. 2024, sec. 4.1): layer dropout and early-exit losses.

Layer l (0-based, of L) maps x_l to x_{l+1}; its early exit reads x_{l+1} through the model's own final norm and
LM head g. The recipe trains every exit so that the plain early exit at n (layers [0, n) -> g) drafts well:

    p_{l,t}  = S(t) D(l) p_max                                   eq. 2, layer l skipped for a sample w.p. p_{l,t}
    D(l)     = e^{l ln2 / (L-1)} - 1                             eq. 3 ("exponential"; "linear": l / (L-1))
    S(t)     = 1, or S_exp(t) = e^{t ln2 / (T-1)} - 1            eq. 4 (for pretraining from scratch)
    J        = sum_l e~(t,l) CE(g(x_{l+1}), y)                   eq. 5
    e~(t,l)  = C(t,l) e(l) / sum_i C(t,i) e(i)                   eq. 6, the scales of the enabled exits sum to 1
    e(l)     = e_scale sum_{i<=l} i          for l < L-1,        the paper's scale (sec. 4.1.2): quadratic in depth
             = L-1 + e_scale sum_{i<=L-2} i  for l = L-1

C(t,l) is the early-exit curriculum: "rotational" (C_rot,R: every R-th layer's exit, shifted by one layer each step,
so each exit is on once every R steps), "gradual" (C_grad: exits enabled from layer L-1 down to 0, one more every
T/2L steps) or "none" (every exit at every step). The last layer's loss is always on. Note that e(0) = 0: the paper's
scale gives the exit after layer 0 no weight (the authors' code sums i + 1 instead, which this module does not).
With e_scale = 0 the loss is the last layer's cross-entropy alone, i.e. plain fine-tuning.

Everything here is plain Python/torch; `FineTuneModule` applies it (`models/finetune.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

DepthScale = Literal["exponential", "linear"]
TimeScale = Literal["constant", "exponential"]
Curriculum = Literal["rotational", "gradual", "none"]
_KEY = "model.init_args.layerskip"


@dataclass(frozen=True)
class LayerSkipRecipe:
    """LayerSkip's hyperparameters (paper sec. 4.1, "Overall, to summarize").

    Args:
        p_max: dropout rate of the last layer, in [0, 1]; 0 turns layer dropout off.
        depth_scale: D(l), how the rate grows with depth: "exponential" (eq. 3) or "linear" (l / (L-1)).
        time_scale: S(t): "constant" (the paper's choice for fine-tuning and continual pretraining) or
            "exponential" (eq. 4, its choice for pretraining from scratch).
        e_scale: scale of the earlier layers' exit losses, in [0, 1]; 0 leaves only the last layer's loss.
        curriculum: C(t,l): "rotational", "gradual" or "none" (all exits at every step).
        rotation_period: R of the rotational curriculum (>= 1): every R-th exit is on at a step.
    """

    p_max: float = 0.1
    depth_scale: DepthScale = "exponential"
    time_scale: TimeScale = "constant"
    e_scale: float = 0.1
    curriculum: Curriculum = "rotational"
    rotation_period: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_max <= 1.0:
            raise ValueError(f"{_KEY}.p_max={self.p_max} must be in [0, 1] (the last layer's dropout rate)")
        if not 0.0 <= self.e_scale <= 1.0:
            raise ValueError(f"{_KEY}.e_scale={self.e_scale} must be in [0, 1] (paper sec. 4.1.2)")
        _check_choice("depth_scale", self.depth_scale, ("exponential", "linear"))
        _check_choice("time_scale", self.time_scale, ("constant", "exponential"))
        _check_choice("curriculum", self.curriculum, ("rotational", "gradual", "none"))
        if isinstance(self.rotation_period, bool) or not isinstance(self.rotation_period, int) \
                or self.rotation_period < 1:
            raise ValueError(f"{_KEY}.rotation_period={self.rotation_period!r} must be an integer >= 1")

    @property
    def needs_total_steps(self) -> bool:
        """True when the schedule depends on the training length T."""
        return self.curriculum == "gradual" or (self.time_scale == "exponential" and self.p_max > 0)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{_KEY}.{name}={value!r} is unknown; choose from {', '.join(choices)}")


def _check_layers(num_layers: int) -> None:
    if num_layers < 2:
        raise ValueError(f"LayerSkip needs at least 2 decoder layers, got L={num_layers}")


def depth_scale(num_layers: int, kind: DepthScale = "exponential") -> list[float]:
    """D(l) for l = 0..L-1: 0 at layer 0, 1 at layer L-1, increasing (eq. 3, or linear)."""
    _check_layers(num_layers)
    _check_choice("depth_scale", kind, ("exponential", "linear"))
    last = num_layers - 1
    if kind == "linear":
        return [layer / last for layer in range(num_layers)]
    # 2 ** (l / (L-1)) is e^{l ln2 / (L-1)}, written so that D(L-1) is exactly 1
    return [2.0 ** (layer / last) - 1.0 for layer in range(num_layers)]


def time_scale(step: int, total_steps: int, kind: TimeScale = "constant") -> float:
    """S(t) at step t of T: 1, or S_exp(t) = e^{t ln2 / (T-1)} - 1 (eq. 4), from 0 at t = 0 to 1 at t = T-1."""
    _check_choice("time_scale", kind, ("constant", "exponential"))
    if kind == "constant" or total_steps <= 1:
        return 1.0
    return 2.0 ** (min(max(step, 0), total_steps - 1) / (total_steps - 1)) - 1.0


def dropout_rates(recipe: LayerSkipRecipe, num_layers: int, step: int = 0, total_steps: int = 1) -> list[float]:
    """p_{l,t} = S(t) D(l) p_max for l = 0..L-1 (eq. 2)."""
    scale = recipe.p_max * time_scale(step, total_steps, recipe.time_scale)
    return [scale * d for d in depth_scale(num_layers, recipe.depth_scale)]


def sample_keep_mask(
    rates: Sequence[float], batch_size: int, device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(L, B) booleans, False where layer l is skipped for sample b (M(p) of eq. 1, drawn per sample).

    Only layers with a rate above 0 draw random numbers, so a recipe without dropout leaves the random stream (and
    with it the model's own dropout) exactly as plain fine-tuning has it.
    """
    keep = torch.ones(len(rates), batch_size, dtype=torch.bool, device=device)
    for layer, p in enumerate(rates):
        if p > 0:
            keep[layer] = torch.rand(batch_size, device=device, generator=generator) >= p
    return keep


def exit_scales(num_layers: int, e_scale: float) -> list[float]:
    """e(l) for l = 0..L-1, before normalisation (sec. 4.1.2): e_scale * sum_{i<=l} i, and L-1 + that at L-1."""
    _check_layers(num_layers)
    scales = [e_scale * layer * (layer + 1) / 2 for layer in range(num_layers - 1)]
    last = num_layers - 1
    return [*scales, last + e_scale * (last - 1) * last / 2]


def enabled_exits(recipe: LayerSkipRecipe, num_layers: int, step: int = 0, total_steps: int = 1) -> list[bool]:
    """C(t,l) for l = 0..L-1; the last layer's exit is always on.

    rotational: layer l is on at step t when (l - t) mod R == 0; gradual: layer l is on once
    t >= (L-1-l) T / 2L, i.e. one more layer every T/2L steps from L-1 down, all on from about t = T/2.
    """
    _check_layers(num_layers)
    last = num_layers - 1
    if recipe.curriculum == "none":
        on = [True] * num_layers
    elif recipe.curriculum == "rotational":
        on = [(layer - step) % recipe.rotation_period == 0 for layer in range(num_layers)]
    else:  # in integers: t >= (L-1-l) T / (2L)
        on = [2 * num_layers * step >= (last - layer) * total_steps for layer in range(num_layers)]
    on[last] = True
    return on


def exit_loss_weights(recipe: LayerSkipRecipe, num_layers: int, step: int = 0, total_steps: int = 1) -> list[float]:
    """e~(t,l) for l = 0..L-1 (eq. 6): the enabled exits' scales, normalised to sum to 1; 0 where disabled."""
    on = enabled_exits(recipe, num_layers, step, total_steps)
    scales = [e if enabled else 0.0 for e, enabled in zip(exit_scales(num_layers, recipe.e_scale), on, strict=True)]
    total = sum(scales)  # > 0: the last layer's e(L-1) >= L-1 >= 1 is always in it
    return [s / total for s in scales]


def exit_cross_entropies(
    states: Sequence[torch.Tensor],
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    exits: Iterable[int],
) -> dict[int, torch.Tensor]:
    """{n: CE(g(x_n), y)} for the exits n in `exits` (1..L); states [x_0, ..., x_L] each (N, D), targets (N,)."""
    return {n: F.cross_entropy(head(states[n]).float(), targets) for n in exits}


def early_exit_losses(
    states: Sequence[torch.Tensor],
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    weights: Sequence[float],
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """J of eq. 5 and the cross-entropy of each exit it uses.

    Args:
        states: [x_0, ..., x_L], each (N, D), at the N target positions.
        targets: (N,) the next tokens y.
        head: g, the model's final norm + LM head.
        weights: e~(t,l) for l = 0..L-1; exits of weight 0 are not computed (the paper's saving: only the enabled
            exits are unembedded).

    Returns:
        The weighted loss and {n: CE(g(x_n), y)} for every exit n = l + 1 that has a weight.
    """
    if len(weights) != len(states) - 1:
        raise ValueError(f"got {len(weights)} exit weights for {len(states) - 1} layers")
    if not any(w > 0 for w in weights):
        raise ValueError("early-exit loss weights are all zero; the last layer's must be positive")
    ces = exit_cross_entropies(states, targets, head, [layer + 1 for layer, w in enumerate(weights) if w > 0])
    terms = [weights[n - 1] * ce for n, ce in ces.items()]
    # one term (e_scale = 0) stays 1.0 * CE, bit for bit plain fine-tuning's loss
    return (terms[0] if len(terms) == 1 else torch.stack(terms).sum()), ces


def finite_total_steps(total_steps: float) -> int:
    """T as an int; a schedule over T cannot run on an endless fit."""
    if not math.isfinite(total_steps):
        raise ValueError(f"{_KEY}: the gradual curriculum and the exponential time scale need a finite training "
                         "length; set trainer.max_steps or trainer.max_epochs")
    return max(1, int(total_steps))
