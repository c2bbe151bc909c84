"""The imitation network I: maps shallow states x_n toward deep-layer states, x_I = I(x_n) (paper sec. 5).

Its output is read out through the backbone's own final norm and LM head, p_I = softmax(g(x_I)). The search
space follows appendix B: up to two linear layers of model width (times a multiplier), an optional single causal
self-attention layer, a layer norm whose placement is configurable, activation, dropout, and a residual path.
With `residual=True` the last linear layer starts at zero, so an untrained network is the identity and the draft
model starts as the plain early exit (layer n -> norm -> head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NormPlacement = Literal["pre", "post", "none"]
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class ImitationState:
    """Keys/values (B, H, T, Dh) of the imitation network's attention layer over all positions seen so far."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adds the new positions and returns the keys/values over everything seen."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys, self.values = torch.cat([self.keys, keys], -2), torch.cat([self.values, values], -2)
        return self.keys, self.values

    def crop(self, length: int) -> None:
        if self.keys is not None:
            self.keys, self.values = self.keys[..., :length, :], self.values[..., :length, :]

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keeps the batch rows `rows` (B',), in that order."""
        if self.keys is not None:
            self.keys, self.values = self.keys[rows], self.values[rows]

    def gather_positions(self, index: torch.Tensor) -> None:
        """Re-lays every row's positions: new slot j of row b holds old slot index[b, j] (index: (B, T'))."""
        if self.keys is not None:
            idx = index[:, None, :, None].expand(-1, self.keys.shape[1], -1, self.keys.shape[-1])
            self.keys, self.values = self.keys.gather(2, idx), self.values.gather(2, idx)


class CausalSelfAttention(nn.Module):
    """Pre-norm causal multi-head self-attention with its own tiny key/value state for decoding."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"imitation attention: hidden_size {hidden_size} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, state: ImitationState | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, D); `attention_mask` (B, past + T), 1 where a key position is real (None: all are)."""
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        past = 0
        if state is not None:
            past = state.length
            k, v = state.append(k, v)
        # a state laid out on per-row slots (decoding/slots.py) knows each row's causal mask itself
        slot_mask = getattr(state, "slot_attention_mask", None)
        mask = slot_mask(T, q.dtype, False) if slot_mask else self._mask(T, past, attention_mask, x.device)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return x + self.out(attn.transpose(1, 2).reshape(B, T, D))

    @staticmethod
    def _mask(T: int, past: int, attention_mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        """(T, past + T) causal mask offset by the state's length, or (B, 1, T, past + T) with padding masked.

        One new position without padding sees everything and needs no mask. A padded query still sees itself, so
        that no row of the softmax is empty (an empty row would put NaN into the state).
        """
        if attention_mask is None:
            return None if T == 1 else torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)
        if T == 1:  # the new position itself is real, so the row is never empty
            return attention_mask.bool()[:, None, None, :]
        causal = torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)
        itself = torch.zeros_like(causal)
        itself[:, past:] = torch.eye(T, dtype=torch.bool, device=device)
        return (causal & attention_mask.bool()[:, None, :] | itself)[:, None]


class ImitationNetwork(nn.Module):
    """x_n (B, T, D) -> x_I (B, T, D).

    Args:
        hidden_size: width D of the backbone's residual stream.
        num_linear: 0, 1 or 2 linear layers (0 keeps only the norm / attention parts).
        width_multiplier: inner width of a 2-layer MLP, as a multiple of D.
        attention: add one causal self-attention layer before the MLP.
        num_heads: heads of that attention layer.
        norm: layer norm before the MLP ("pre"), after it ("post"), or none.
        activation: one of gelu, relu, silu, tanh (between the two linear layers).
        dropout: dropout after the activation and inside attention.
        residual: add the input back (x_I = x_n + MLP(x_n)), with the last linear layer zero-initialised.
    """

    def __init__(
        self,
        hidden_size: int,
        num_linear: int = 2,
        width_multiplier: float = 1.0,
        attention: bool = False,
        num_heads: int = 4,
        norm: NormPlacement = "pre",
        activation: str = "gelu",
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self._config = dict(num_linear=num_linear, width_multiplier=width_multiplier, attention=attention,
                            num_heads=num_heads, norm=norm, activation=activation, dropout=dropout, residual=residual)
        if num_linear not in (0, 1, 2):
            raise ValueError(f"imitation num_linear must be 0, 1 or 2, got {num_linear}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"imitation activation {activation!r} unknown; choose from {sorted(_ACTIVATIONS)}")
        if norm not in ("pre", "post", "none"):
            raise ValueError(f"imitation norm must be 'pre', 'post' or 'none', got {norm!r}")
        if width_multiplier <= 0:
            raise ValueError(f"imitation width_multiplier must be > 0, got {width_multiplier}")
        self.hidden_size = hidden_size
        self.residual = residual
        self.norm_placement = norm
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout) if attention else None
        self.norm = nn.LayerNorm(hidden_size) if norm != "none" else None
        self.mlp = self._build_mlp(hidden_size, num_linear, width_multiplier, activation, dropout)
        if residual and num_linear:
            last = self.mlp[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @staticmethod
    def _build_mlp(D: int, num_linear: int, mult: float, activation: str, dropout: float) -> nn.Sequential:
        if num_linear == 0:
            return nn.Sequential()
        if num_linear == 1:
            return nn.Sequential(nn.Linear(D, D))
        width = max(1, round(D * mult))
        return nn.Sequential(nn.Linear(D, width), _ACTIVATIONS[activation](), nn.Dropout(dropout), nn.Linear(width, D))

    def config(self) -> dict:
        """The constructor arguments besides hidden_size: `ImitationNetwork(hidden_size, **config())` rebuilds it."""
        return dict(self._config)

    @property
    def has_state(self) -> bool:
        """True when decoding must feed every shallow state through the network (attention over the past)."""
        return self.attention is not None

    def new_state(self) -> ImitationState | None:
        return ImitationState() if self.has_state else None

    def forward(
        self, x_n: torch.Tensor, state: ImitationState | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_n (B, T, D) -> x_I (B, T, D); `attention_mask` (B, past + T) marks real positions for the attention."""
        if x_n.shape[-1] != self.hidden_size:
            raise ValueError(
                f"imitation network width {self.hidden_size} does not match the backbone hidden size {x_n.shape[-1]}"
            )
        x = self.attention(x_n, state, attention_mask) if self.attention is not None else x_n
        h = self.norm(x) if self.norm_placement == "pre" else x
        h = self.mlp(h)
        out = x + h if self.residual and len(self.mlp) else h
        return self.norm(out) if self.norm_placement == "post" else out

    def observe(
        self, x_n: torch.Tensor, state: ImitationState | None, attention_mask: torch.Tensor | None = None
    ) -> None:
        """Records shallow states whose draft output is not needed (keeps the attention state complete)."""
        if state is not None:
            self.attention(x_n, state, attention_mask)
