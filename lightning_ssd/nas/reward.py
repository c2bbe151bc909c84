"""The search reward: draft quality (measured acceptance) weighed against draft cost (measured FLOPs).

    reward = S(alpha, d) = tau(alpha, d) * (L + H) / ((d + 1) n + d (A + H) + (L - n) + H)
    tau(alpha, d) = (1 - alpha^(d+1)) / (1 - alpha)

the expected decode speedup over plain greedy decoding of `CostModel.predicted_speedup` (see
`lightning_ssd/decoding/cost.py`): alpha is the acceptance rate measured by SSD decoding of the validation split, d
the draft length, and L, n, A, H the layer count, the exit layer, and the imitation network's and the head's FLOPs
per token in decoder-layer units. A larger network can raise alpha but pays for it in A on every draft token; the
reward is highest where the two balance. It is an analytic figure, not a wall-clock one, so trials that share a
busy machine are ranked by what they learned rather than by the load they ran under.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lightning_ssd.decoding.cost import CostModel


@dataclass(frozen=True)
class Reward:
    """A trial's final score and what it is made of (all reported to NNI; `speedup` is the reward)."""

    speedup: float
    alpha: float
    tau_expected: float
    draft: int
    imitation_cost: float
    head_cost: float
    ceiling: float

    def metrics(self) -> dict[str, float]:
        """NNI's final-result dict: the reward under "default", the terms next to it."""
        return {"default": self.speedup, **{k: float(v) for k, v in asdict(self).items()}}


def draft_reward(cost: CostModel, alpha: float, draft: int) -> Reward:
    """The expected speedup of SSD with `draft` tokens per cycle at measured acceptance `alpha`.

    Raises:
        ValueError: alpha is not a probability (NaN when no draft token was judged: decode longer outputs or more
            validation samples), or draft < 1.
    """
    if not (0.0 <= alpha <= 1.0):  # also rejects NaN
        raise ValueError(f"acceptance alpha must be in [0, 1], got {alpha}: no draft token was judged at validation "
                         "if it is NaN; raise --max-new-tokens or --num-val")
    if draft < 1:
        raise ValueError(f"draft length d must be >= 1, got {draft}")
    return Reward(
        speedup=cost.predicted_speedup(alpha, [draft]),
        alpha=alpha,
        tau_expected=cost.tokens_per_cycle(alpha, draft),
        draft=draft,
        imitation_cost=cost.A,
        head_cost=cost.H,
        ceiling=cost.ceiling,
    )
