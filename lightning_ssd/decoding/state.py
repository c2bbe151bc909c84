"""The decoding state of a batch: one KV cache whose rows advance by different amounts each cycle.

Layout: ragged rows under a mask, over transformers' own `DynamicCache`.

- Every cache layer holds S slots for each of the B live rows. A speculative cycle appends the same number of slots
  to every row (its last token and the d drafts); row b keeps k_b + 1 of them. The slots past max_b(k_b + 1) are
  cropped from every row; row b's other rejected slots stay in place as holes, marked 0 in `valid` (B, S).
- Attention reads `valid` as its padding mask (the same mask that left padding of the prompt starts it with), and
  each row keeps its own next position, so rotary, learned and relative positions see every row's true positions
  while the slots stay aligned across rows. A drafter's per-row state (the imitation network's attention keys and
  values) is laid out on the same slots and follows every crop, row drop and compaction (`follow`).
- A row that has finished is dropped from the batch at the end of its cycle: one index-select of every cache tensor,
  after which the row costs nothing.
- Holes are compacted when they are more than half of the S slots of the fullest row: every row's real slots are
  gathered right-aligned (left padding again), one copy of the cache.

Cost: a cycle's crop and mask update are O(B * S) index work; the mask itself is built by transformers from `valid`
at every forward (no mask at all while nothing is masked, as at batch size 1, where cropping leaves no hole); row
drops and compactions copy the cache, O(L * B * S * D), each at most once per finished row or per halving of the
waste. Attention runs over the holes until they are compacted: at most 2x the real context of the fullest row.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder
from lightning_ssd.backbones.vlm import DecoderPrompt


def _cache_layers(cache: Cache) -> list:
    if isinstance(cache, EncoderDecoderCache):
        return [*cache.self_attention_cache.layers, *cache.cross_attention_cache.layers]
    return list(cache.layers)


def _self_attention_layers(decoder: SplitDecoder, cache: Cache) -> list:
    return list(decoder.self_attention_cache(cache).layers)


class BatchState:
    """KV cache, slot validity and positions of the live rows of a decoding batch, and the per-row states that follow
    them.

    Args:
        decoder: the backbone's split decoder.
        prompt: the encoded, left-padded prompt batch (`SplitVLM.encode`).

    Attributes:
        compact_ratio: the holes are compacted once they outnumber this times the real slots of the fullest row.
        rows: (B,) index of each live row in the original batch.
        valid: (B, S) bool, True where a cache slot holds a real token of that row.
        position: (B,) long, the true position of each row's next token.
    """

    compact_ratio: float = 1.0

    def __init__(self, decoder: SplitDecoder, prompt: DecoderPrompt) -> None:
        self.decoder = decoder
        self.prompt = prompt
        self.encoder: EncoderOutput | None = prompt.encoder
        self.cache = decoder.new_cache()
        self.followers: list = []  # per-row states laid out on the slots: crop, select_rows, gather_positions
        device = prompt.inputs_embeds.device
        self.device = device
        self.valid = prompt.attention_mask.bool()
        self.position = prompt.attention_mask.long().sum(-1) if prompt.next_position is None else prompt.next_position
        self.rows = torch.arange(self.valid.shape[0], device=device)
        self._any_hole = not bool(self.valid.all())

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def slots(self) -> int:
        return self.valid.shape[1]

    def mask(self, new: int) -> torch.Tensor | None:
        """(B, S + new) padding mask for a pass that adds `new` slots after the S committed ones; None if none."""
        if not self._any_hole:
            return None
        return torch.cat([self.valid, self.valid.new_ones(self.batch_size, new)], dim=1)

    # -- forward passes ----------------------------------------------------------------------------------------------

    def prefill(self, lo: int, hi: int, x: torch.Tensor | None = None) -> torch.Tensor:
        """x_hi (B, T, D) of the prompt through layers [lo, hi), from x_lo (None: the prompt's embeddings, lo = 0).

        `valid` covers the prompt's slots from the start; the prefill fills them.
        """
        p = self.prompt
        if x is None:
            x = self.decoder.embed(p.inputs_embeds, p.position_ids)
        return self.decoder.run_layers(x, lo, hi, self.cache, p.position_ids, self.mask(0), self.encoder)

    def token_states(self, tokens: torch.Tensor, offset: int, hi: int) -> torch.Tensor:
        """x_hi (B, 1, D) of one token per row, `offset` slots past the committed ones, through layers [0, hi)."""
        pos = (self.position + offset).unsqueeze(1)
        x = self.decoder.embed(self.decoder.embed_tokens(tokens.unsqueeze(1)), pos)
        return self.decoder.run_layers(x, 0, hi, self.cache, pos, self.mask(offset + 1), self.encoder)

    def run(self, x: torch.Tensor, lo: int, hi: int, offset: int = 0) -> torch.Tensor:
        """Layers [lo, hi) over states x (B, T, D) of the T slots `offset` slots past the committed ones."""
        T = x.shape[1]
        pos = self.position.unsqueeze(1) + offset + torch.arange(T, device=x.device)
        return self.decoder.run_layers(x, lo, hi, self.cache, pos, self.mask(offset + T), self.encoder)

    def attention_state(self, network: nn.Module):
        """A new attention state for `network` (its `new_state()`, None if it keeps none), following these slots."""
        attention = network.new_state()
        if attention is not None:
            self.followers.append(attention)
        return attention

    def attend(self, attention, new: int, offset: int | None) -> torch.Tensor | None:
        """The padding mask for an attention state's pass over `new` states `offset` slots past the committed ones
        (None: the prompt's)."""
        return self.mask(0 if offset is None else offset + 1)

    # -- bookkeeping between cycles ----------------------------------------------------------------------------------

    def discard(self, lo: int, hi: int) -> None:
        """Drops every slot appended past the committed ones from cache layers [lo, hi).

        For a draft model whose states in those layers are not the full model's (skipped layers): its keys/values
        there are dropped before verification writes the true ones over the same slots.
        """
        self.decoder.crop_layers(self.cache, lo, hi, self.slots)

    def commit(self, kept: torch.Tensor, hi: int) -> None:
        """Keeps the first kept[b] of the slots appended this cycle in each row, in layers [0, hi)."""
        width = int(kept.max())
        length = self.slots + width
        self.decoder.crop_layers(self.cache, 0, hi, length)
        for follower in self.followers:
            follower.crop(length)
        new = torch.arange(width, device=kept.device) < kept.unsqueeze(1)  # (B, width)
        self.valid = torch.cat([self.valid, new], dim=1)
        self.position = self.position + kept
        self._any_hole = self._any_hole or bool((kept != width).any())
        self._compact_if_wasteful()

    def advance(self) -> None:
        """Keeps the one slot every row appended (plain decoding): nothing to crop, no hole made."""
        self.valid = torch.cat([self.valid, self.valid.new_ones(self.batch_size, 1)], dim=1)
        self.position = self.position + 1

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Keeps the live rows at indices `keep` (B',) of the current batch and drops the others."""
        if keep.numel() == self.batch_size:
            return
        for layer in _cache_layers(self.cache):
            if layer.keys is not None and layer.keys.numel():
                layer.batch_select_indices(keep)
        for follower in self.followers:
            follower.select_rows(keep)
        if self.encoder is not None:
            self.encoder = EncoderOutput(self.encoder.hidden_states[keep], self.encoder.attention_mask[keep])
        self.valid, self.position, self.rows = self.valid[keep], self.position[keep], self.rows[keep]
        self._compact_if_wasteful()

    def _compact_if_wasteful(self) -> None:
        if not self._any_hole:
            return
        counts = self.valid.sum(-1)
        width = int(counts.max())
        if self.slots - width <= self.compact_ratio * width:
            return
        # new slot j of row b takes old slot index[b, j]: the row's real slots in order, right-aligned
        order = torch.sort((~self.valid).long(), dim=1, stable=True).indices  # real slots first, in order
        shift = (width - counts).unsqueeze(1)  # left padding of each row
        j = torch.arange(width, device=self.device).unsqueeze(0)
        index = order.gather(1, (j - shift).clamp(min=0))
        valid = j >= shift
        for layer in _self_attention_layers(self.decoder, self.cache):
            idx = index[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
            layer.keys, layer.values = layer.keys.gather(2, idx), layer.values.gather(2, idx)
        for follower in self.followers:
            follower.gather_positions(index)
        self.valid = valid
        self._any_hole = not bool(valid.all())
