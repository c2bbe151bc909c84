"""A preallocated key/value cache whose rows are written in place, each at its own offset.

Layout: every decoder layer holds two buffers of shape (R, H, S, Dh): R rows (the engine's live-row capacity), H
key/value heads, S slots per row, head width Dh, allocated on the first write with the keys' dtype and device. Row r
holds one sequence; its slot j holds the sequence's j-th token, so a row's real slots are always [0, length_r) and
nothing is ever padded, shifted or gathered.

Why not transformers' own classes: `DynamicCache` grows by `torch.cat`, which copies every layer's keys and values
at every step (O(T^2) memory traffic over a sequence of T tokens); `StaticCache` is preallocated but keeps ONE length
for the whole batch, while speculative rows accept different numbers of drafts and continuous batching admits rows
at different times. `SlotCache` is a `transformers.cache_utils.Cache` all the same, so the families' own attention
modules call `update` on it unchanged.

Each forward pass is bound first (`bind`): the pass covers the contiguous rows [r0, r1) and writes its T new tokens
of row b at slots write_at[b] .. write_at[b] + T - 1. The layers' `update` writes there and returns a view of the
rows' first W = max(write_at) + T slots; `slot_attention_mask` is the matching (B, 1, T, W) causal mask, where
query t of row b sees slot j iff j <= write_at[b] + t. Slots past a row's length hold stale keys of rejected
drafts or of an earlier sequence: they are masked, and overwritten by the row's next writes.

Costs: a write is O(B * T * H * Dh) per layer (no copy of what is already cached); rejecting drafts is free (the
engine lowers the row's length); attention reads W slots per row, the fullest row's length; moving a row (to keep
the live rows contiguous when one leaves) copies that row's filled slots once. A pass that would write past S
raises: the engine admits a request only if its prompt, its token budget and one draft block fit in S.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class SlotLayer(CacheLayerMixin):
    """One decoder layer's (R, H, S, Dh) key and value buffers, written at the bound pass's per-row offsets."""

    is_compileable = True

    def __init__(self, cache: SlotCache) -> None:
        super().__init__()
        self.cache = cache

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        c = self.cache
        shape = (c.max_rows, key_states.shape[1], c.max_slots)
        self.keys = key_states.new_zeros(*shape, key_states.shape[-1])
        self.values = value_states.new_zeros(*shape, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes (B, H, T, Dh) at the bound slots and returns the bound rows' keys and values over W slots."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        c = self.cache
        rows, slots = c.write_index
        self.keys[rows, :, slots] = key_states.transpose(1, 2)  # (B, T, H, Dh) at [row, :, slot]
        self.values[rows, :, slots] = value_states.transpose(1, 2)
        return self.keys[c.r0:c.r1, :, : c.width], self.values[c.r0:c.r1, :, : c.width]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cache.width, 0

    def get_seq_length(self) -> int:
        return self.cache.width

    def get_max_length(self) -> int:
        return self.cache.max_slots

    def move_row(self, src: int, dst: int, length: int) -> None:
        if self.is_initialized:
            self.keys[dst, :, :length] = self.keys[src, :, :length]
            self.values[dst, :, :length] = self.values[src, :, :length]


class CrossSlotLayer(SlotLayer):
    """One layer's cross-attention keys/values (Flan-T5): a row's encoder states, written once, at its prefill.

    The attention module reads `keys`/`values` directly once the cache says they are computed
    (`EncoderDecoderCache.is_updated`), so they are the bound rows' view here, not the whole buffer.
    """

    def __init__(self, cache: SlotCache) -> None:
        self._keys = self._values = None
        super().__init__(cache)

    @property
    def keys(self) -> torch.Tensor | None:
        c = self.cache
        return None if self._keys is None else self._keys[c.r0:c.r1, :, : c.width]

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        self._keys = value

    @property
    def values(self) -> torch.Tensor | None:
        c = self.cache
        return None if self._values is None else self._values[c.r0:c.r1, :, : c.width]

    @values.setter
    def values(self, value: torch.Tensor | None) -> None:
        self._values = value

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes a prefilled row's (1, H, S_enc, Dh) encoder keys/values at its slots [0, S_enc)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        c, T = self.cache, key_states.shape[2]
        self._keys[c.r0:c.r1, :, :T] = key_states
        self._values[c.r0:c.r1, :, :T] = value_states
        return self.keys, self.values

    def move_row(self, src: int, dst: int, length: int) -> None:
        if self.is_initialized:
            self._keys[dst] = self._keys[src]
            self._values[dst] = self._values[src]


class SlotCache(Cache):
    """Preallocated per-row slots for `num_layers` decoder layers.

    Args:
        num_layers: decoder layers L.
        max_rows: rows R (sequences decoded at once).
        max_slots: slots S per row (prompt + generated tokens + one draft block; encoder states for a cross cache).
        cross: hold cross-attention keys/values (`CrossSlotLayer`) instead of self-attention ones.
    """

    def __init__(self, num_layers: int, max_rows: int, max_slots: int, cross: bool = False) -> None:
        if max_rows < 1 or max_slots < 1:
            raise ValueError(f"a slot cache needs max_rows >= 1 and max_slots >= 1, got {max_rows}, {max_slots}")
        self.max_rows, self.max_slots = max_rows, max_slots
        layer = CrossSlotLayer if cross else SlotLayer
        super().__init__(layers=[layer(self) for _ in range(num_layers)])
        self.r0, self.r1, self.width = 0, 0, 0
        self.write_at: torch.Tensor | None = None
        self.write_index: tuple[torch.Tensor, torch.Tensor] | None = None

    def bind(self, r0: int, r1: int, write_at: torch.Tensor, new: int) -> None:
        """The next passes write `new` tokens per row of rows [r0, r1), row b's first at slot write_at[b].

        The indices of those writes, (B, 1) rows and (B, T) slots (`write_index`), are built here once for every
        layer of the pass."""
        width = int(write_at.max()) + new
        if width > self.max_slots:
            raise ValueError(f"the key/value cache holds {self.max_slots} slots per row; a pass would write up to "
                             f"slot {width - 1} (raise the engine's max_slots)")
        self.r0, self.r1, self.write_at, self.width = r0, r1, write_at, width
        device = write_at.device
        self.write_index = (torch.arange(r0, r1, device=device).unsqueeze(1),
                            write_at.unsqueeze(1) + torch.arange(new, device=device))

    def slot_attention_mask(self, new: int, dtype: torch.dtype, additive: bool, may_skip: bool = False
                            ) -> torch.Tensor | None:
        """(B, 1, T, W) causal mask of the bound pass: boolean, or additive (0 / dtype min) for eager attention.

        With `may_skip`, None when the pass needs no mask: one new token per row, every row writing at the last of
        the W slots (so each sees all of them), as at batch size 1; attention then takes its unmasked kernel.
        """
        if may_skip and new == 1 and bool((self.write_at == self.width - 1).all()):
            return None
        device = self.write_at.device
        last = self.write_at.unsqueeze(1) + torch.arange(new, device=device)  # (B, T): slot of each query
        visible = torch.arange(self.width, device=device) <= last.unsqueeze(-1)  # (B, T, W)
        visible = visible.unsqueeze(1)
        if not additive:
            return visible
        return torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible, torch.finfo(dtype).min)

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copies row `src`'s first `length` slots into row `dst` in every layer."""
        for layer in self.layers:
            layer.move_row(src, dst, length)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width
