"""The analytic speed model of self-speculative decoding, with costs measured in FLOPs.

Costs are in layer-equivalents: one decoder layer on one token = 1; H = LM head (with final norm),
A = imitation network, both per token, measured with `torch.utils.flop_counter`.
Per cycle with d drafts and i.i.d. acceptance alpha:
  tokens  = (1 - alpha^(d+1)) / (1 - alpha)                      (d + 1 when alpha = 1)
  cost    = (d + 1) * n + d * (A + H) + (L - n) + H               (d+1 shallow passes, d draft readouts,
                                                                    one deep pass, one head over the block)
against L + H per token for plain decoding. The ceiling (alpha = 1, d -> inf) is (L + H) / (n + A + H).
The deep pass over d + 1 tokens is counted as one layer-pass per layer: that holds where decoding is bound by
reading weights (GPUs, and CPUs at these widths), not where it is bound by arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder


@dataclass(frozen=True)
class CostModel:
    """Layer-equivalent costs of one backbone split at n with one imitation network."""

    L: int
    n: int
    A: float
    H: float

    def tokens_per_cycle(self, alpha: float, d: int) -> float:
        return float(d + 1) if alpha >= 1.0 else (1.0 - alpha ** (d + 1)) / (1.0 - alpha)

    @property
    def plain_cost(self) -> float:
        """One token of plain decoding: every layer and the head."""
        return self.L + self.H

    def draft_cost(self, d: int) -> float:
        """A cycle's drafting: d + 1 shallow passes and d draft readouts."""
        return (d + 1) * self.n + d * (self.A + self.H)

    @property
    def verify_cost(self) -> float:
        """A cycle's verification: one deep pass and one head over the block."""
        return (self.L - self.n) + self.H

    def cycle_cost(self, d: int) -> float:
        return self.draft_cost(d) + self.verify_cost

    def predicted_speedup(self, alpha: float, drafts: Iterable[int]) -> float:
        """Speedup over plain decoding for cycles drafting `drafts` tokens each (one entry per cycle)."""
        drafts = list(drafts)
        if not drafts:
            return float("nan")
        tokens = sum(self.tokens_per_cycle(alpha, d) for d in drafts)
        return tokens * self.plain_cost / sum(self.cycle_cost(d) for d in drafts)

    @property
    def ceiling(self) -> float:
        return self.plain_cost / (self.n + self.A + self.H)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def count_parameters(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


@torch.inference_mode()
def measure_cost_model(
    decoder: SplitDecoder, n: int, imitation: nn.Module | None = None, context: int = 32
) -> tuple[CostModel, dict[str, float]]:
    """FLOPs of one decoding token through one layer (mean over layers), the head and the imitation network.

    Returns the cost model and a report with raw FLOPs and parameter counts, including the imitation network's
    size relative to the L - n layers it stands in for.
    """
    param = next(decoder.parameters())
    D, L = decoder.hidden_size, decoder.num_layers
    encoder = None
    if decoder.is_encoder_decoder:
        encoder = EncoderOutput(
            torch.zeros(1, context, D, dtype=param.dtype, device=param.device),
            torch.ones(1, context, dtype=torch.long, device=param.device),
        )
    cache = decoder.new_cache()
    prefix = torch.zeros(1, context, D, dtype=param.dtype, device=param.device)
    decoder.run_layers(prefix, 0, L, cache, torch.arange(context, device=param.device)[None], None, encoder)
    x = torch.zeros(1, 1, D, dtype=param.dtype, device=param.device)
    pos = torch.tensor([[context]], device=param.device)
    layers = _flops(lambda: decoder.run_layers(x, 0, L, cache, pos, None, encoder))
    layer = layers / L
    head = _flops(lambda: decoder.head(x))
    imit = 0
    if imitation is not None:
        state = imitation.new_state()
        if state is not None:
            imitation(prefix, state)
        imit = _flops(lambda: imitation(x, state))
    model = CostModel(L=L, n=n, A=imit / layer, H=head / layer)
    deep_params = sum(count_parameters(decoder.layers[i]) for i in range(n, L))
    report = {
        "layer_flops_per_token": layer,
        "head_flops_per_token": head,
        "imitation_flops_per_token": imit,
        "imitation_params": count_parameters(imitation),
        "deep_layers_params": deep_params,
        "imitation_params_vs_deep_layers": count_parameters(imitation) / deep_params,
        "imitation_flops_vs_deep_layers": imit / (layer * (L - n)),
    }
    return model, report
