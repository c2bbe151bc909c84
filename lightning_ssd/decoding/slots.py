"""The decoding state of a continuous batch: live rows over a preallocated `SlotCache`, each at its own length.

Rows [0, B) of the cache are the live ones, always contiguous: a new sequence is prefilled into row B, and when a
row leaves, the last live row moves into its place (one copy of that row's filled slots). Row b's committed tokens
fill its slots [0, length[b]); position[b] is the true position of its next token (equal to the length, except under
Qwen2.5-VL's M-RoPE, whose generated positions continue after the largest prompt position).

Its methods are the ones a `Drafter` calls on `BatchState` (`token_states`, `run`, `attention_state`, `attend`,
`discard`), so the drafters run on either. Differences: nothing is cropped (a rejected draft's slots are simply
written over at the next cycle), and there are no holes, masks of padding or compactions.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import EncoderDecoderCache

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder
from lightning_ssd.backbones.vlm import DecoderPrompt
from lightning_ssd.decoding.kv_cache import SlotCache


class SlotState:
    """Live rows, their lengths and positions, over one `SlotCache`.

    Args:
        decoder: the backbone's split decoder.
        max_rows: rows decoded at once.
        max_slots: slots per row (for Flan-T5, also the most encoder states a row may cross-attend to).
        device: where the per-row bookkeeping lives (the model's device).
        compile: run the decoder's layer ranges through `torch.compile` (dynamic shapes: the pass width and the
            number of live rows change every cycle).

    Attributes:
        batch_size: B, the number of live rows (rows [0, B) of the cache).
        length: (B,) committed slots of each live row.
        position: (B,) true position of each live row's next token.
        histories: each live row's tokens so far (prompt ids, then generated ones), for drafters that read them.
    """

    def __init__(self, decoder: SplitDecoder, max_rows: int, max_slots: int, device: torch.device,
                 compile: bool = False) -> None:
        self.decoder, self.device = decoder, device
        self._run_layers = torch.compile(decoder.run_layers, dynamic=True) if compile else decoder.run_layers
        self.cache = SlotCache(decoder.num_layers, max_rows, max_slots)
        self._cross = _CrossAttention(decoder, self.cache, max_rows, max_slots) if decoder.is_encoder_decoder else None
        self.length = torch.zeros(0, dtype=torch.long, device=device)
        self.position = torch.zeros(0, dtype=torch.long, device=device)
        self.histories: list[list[int]] = []
        self._prefilled = (0, 0)  # the rows of the last prefill
        self.followers: list = []  # per-row states on the same rows: move_row

    @property
    def batch_size(self) -> int:
        return self.length.shape[0]

    @property
    def rows(self) -> torch.Tensor:
        return torch.arange(self.batch_size, device=self.device)

    @property
    def max_rows(self) -> int:
        return self.cache.max_rows

    @property
    def max_slots(self) -> int:
        return self.cache.max_slots

    # -- admission and retirement ------------------------------------------------------------------------------------

    def prefill(self, prompt: DecoderPrompt, histories: list[list[int]], hi: int) -> torch.Tensor:
        """Adds the k sequences of an unpadded prompt batch (k, T) as rows [B, B + k) and returns their prompt
        states x_hi (k, T, D) through layers [0, hi)."""
        k, T = prompt.inputs_embeds.shape[:2]
        if self.batch_size + k > self.max_rows:
            raise RuntimeError(f"{self.batch_size} of {self.max_rows} rows are live; {k} more do not fit")
        if T >= self.max_slots:
            raise ValueError(f"a prompt of {T} tokens does not fit the cache's {self.max_slots} slots per row")
        r0 = self.batch_size
        if self._cross is not None:
            self._cross.admit(r0, prompt.encoder)
        x = self.decoder.embed(prompt.inputs_embeds, prompt.position_ids)
        x_hi = self._forward(x, 0, hi, r0, r0 + k, self.length.new_zeros(k), prompt.position_ids)
        next_position = self.length.new_full((k,), T) if prompt.next_position is None else prompt.next_position
        self.length = torch.cat([self.length, self.length.new_full((k,), T)])
        self.position = torch.cat([self.position, next_position.to(self.position)])
        self.histories += [list(h) for h in histories]
        self._prefilled = (r0, r0 + k)
        return x_hi

    def prefill_rest(self, prompt: DecoderPrompt, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Layers [lo, hi) over the last prefilled rows' prompt states x (k, T, D)."""
        r0, r1 = self._prefilled
        return self._forward(x, lo, hi, r0, r1, self.length.new_zeros(r1 - r0), prompt.position_ids)

    def _forward(self, x: torch.Tensor, lo: int, hi: int, r0: int, r1: int, write_at: torch.Tensor,
                 position_ids: torch.Tensor) -> torch.Tensor:
        """Layers [lo, hi) over rows [r0, r1), row b's new slots starting at write_at[b]."""
        self.cache.bind(r0, r1, write_at, x.shape[1])
        if self._cross is None:
            return self._run_layers(x, lo, hi, self.cache, position_ids)
        cache, encoder = self._cross.bind(r0, r1)
        return self._run_layers(x, lo, hi, cache, position_ids, encoder=encoder)

    def retire(self, row: int) -> None:
        """Frees live row `row`: the last live row moves into its place (its index changes to `row`)."""
        last = self.batch_size - 1
        if row != last:
            self.cache.move_row(last, row, int(self.length[last]))
            if self._cross is not None:
                self._cross.move_row(last, row)
            for follower in self.followers:
                follower.move_row(last, row, int(self.length[last]))
            self.length[row], self.position[row] = self.length[last], self.position[last]
            self.histories[row] = self.histories[last]
        self.length, self.position = self.length[:last], self.position[:last]
        self.histories.pop()

    # -- the passes drafters and verification run -------------------------------------------------------------------

    def token_states(self, tokens: torch.Tensor, offset: int, hi: int) -> torch.Tensor:
        """x_hi (B, 1, D) of one token per row, `offset` slots past the committed ones, through layers [0, hi)."""
        pos = (self.position + offset).unsqueeze(1)
        x = self.decoder.embed(self.decoder.embed_tokens(tokens.unsqueeze(1)), pos)
        return self._forward(x, 0, hi, 0, self.batch_size, self.length + offset, pos)

    def run(self, x: torch.Tensor, lo: int, hi: int, offset: int = 0) -> torch.Tensor:
        """Layers [lo, hi) over states x (B, T, D) of the T slots `offset` slots past the committed ones."""
        T = x.shape[1]
        pos = self.position.unsqueeze(1) + offset + torch.arange(T, device=x.device)
        return self._forward(x, lo, hi, 0, self.batch_size, self.length + offset, pos)

    def attention_state(self, network: torch.nn.Module):
        """A new attention state for `network` on these rows and slots (None if the network keeps none)."""
        if network.new_state() is None:
            return None
        attention = SlotImitationState(self.max_rows, self.max_slots)
        self.followers.append(attention)
        return attention

    def attend(self, attention: SlotImitationState, new: int, offset: int | None) -> None:
        """Binds an attention state's next pass: `new` states `offset` slots past every row's committed ones, or
        (offset None) the last prefilled rows' prompts. Its mask comes from the state itself."""
        if offset is None:
            r0, r1 = self._prefilled
            attention.cache.bind(r0, r1, self.length.new_zeros(r1 - r0), new)
        else:
            attention.cache.bind(0, self.batch_size, self.length + offset, new)

    def discard(self, lo: int, hi: int) -> None:
        """Nothing to drop: verification writes the full model's keys/values over the same slots."""

    def commit(self, kept: torch.Tensor) -> None:
        """Row b keeps the first kept[b] slots written this cycle (its last token and its accepted drafts)."""
        self.length = self.length + kept
        self.position = self.position + kept


class SlotImitationState:
    """The imitation network's attention keys/values on the decoder's rows and slots (a one-layer `SlotCache`).

    `CausalSelfAttention` appends to it as to `ImitationState`, and takes its mask from it (`slot_attention_mask`),
    since the causal structure differs per row.
    """

    length = 0  # the attention's own causal mask is not used: the slot mask is

    def __init__(self, max_rows: int, max_slots: int) -> None:
        self.cache = SlotCache(1, max_rows, max_slots)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.layers[0].update(keys, values)

    def slot_attention_mask(self, new: int, dtype: torch.dtype, additive: bool) -> torch.Tensor | None:
        return self.cache.slot_attention_mask(new, dtype, additive, may_skip=not additive)

    def move_row(self, src: int, dst: int, length: int) -> None:
        self.cache.move_row(src, dst, length)


class _CrossAttention:
    """Flan-T5's cross-attention on the slot layout: each row's encoder keys/values, computed once at its prefill.

    Passes run on an `EncoderDecoderCache` of the self-attention `SlotCache` and a cross-attention one. Its
    `is_updated` flags say whether the layers must compute the encoder keys/values (a row's prefill) or read them
    (every other pass); the encoder states handed to the layers then only carry the rows' encoder padding mask.
    """

    def __init__(self, decoder: SplitDecoder, cache: SlotCache, max_rows: int, max_slots: int) -> None:
        self.num_layers = decoder.num_layers
        self.cache = EncoderDecoderCache(cache, SlotCache(decoder.num_layers, max_rows, max_slots, cross=True))
        self.length = torch.zeros(max_rows, dtype=torch.long)
        self.pending: EncoderOutput | None = None  # the encoder output of the row being prefilled
        self.placeholder: torch.Tensor | None = None  # (R, S_enc, D) zeros: shapes for the encoder mask

    def admit(self, row: int, encoder: EncoderOutput) -> None:
        """The next passes prefill rows [row, row + k) (encoder (k, S, D)): their encoder states are projected into
        the cross cache."""
        S = encoder.hidden_states.shape[1]
        if S > self.cache.cross_attention_cache.max_slots:
            raise ValueError(f"an encoder output of {S} states does not fit the cache's "
                             f"{self.cache.cross_attention_cache.max_slots} slots per row")
        if self.placeholder is None:
            R, slots = self.cache.cross_attention_cache.max_rows, self.cache.cross_attention_cache.max_slots
            self.placeholder = encoder.hidden_states.new_zeros(R, slots, encoder.hidden_states.shape[-1])
            self.length = self.length.to(encoder.hidden_states.device)
        self.length[row : row + encoder.hidden_states.shape[0]] = S
        self.pending = encoder
        self.cache.is_updated = dict.fromkeys(range(self.num_layers), False)

    def bind(self, r0: int, r1: int) -> tuple[EncoderDecoderCache, EncoderOutput]:
        cross = self.cache.cross_attention_cache
        # a prefill's passes (layers [0, n), then [n, L)) each project the row's encoder states in their layers;
        # the attention modules mark each layer done in `is_updated`
        if self.pending is not None and not all(self.cache.is_updated.values()):
            cross.bind(r0, r1, self.length.new_zeros(r1 - r0), self.pending.hidden_states.shape[1])
            return self.cache, self.pending
        self.pending = None
        width = int(self.length[r0:r1].max())
        cross.bind(r0, r1, self.length.new_zeros(1), width)
        self.cache.is_updated = dict.fromkeys(range(self.num_layers), True)
        mask = (torch.arange(width, device=self.length.device) < self.length[r0:r1, None]).long()
        return self.cache, EncoderOutput(self.placeholder[r0:r1, :width], mask)

    def move_row(self, src: int, dst: int) -> None:
        self.cache.cross_attention_cache.move_row(src, dst, int(self.length[src]))
        self.length[dst] = self.length[src]
