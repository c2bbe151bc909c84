"""The split-decoder interface: one LLM decoder seen as embed -> layers [0, n) -> layers [n, L) -> head.

Self-speculative decoding runs the shallow layers [0, n) to draft and the deep layers [n, L) to verify, on ONE
key/value cache whose layers may hold different lengths (the shallow layers have already seen the drafted
tokens when the deep layers are asked to verify them). Each backbone family implements this interface over the
real transformers modules, so that `embed`, `run_layers(0, L)` and `head` reproduce the model's own forward.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask


@dataclass
class EncoderOutput:
    """Encoder states attended by an encoder-decoder LLM (Flan-T5) through cross-attention.

    Attributes:
        hidden_states: (B, S, D) encoder output.
        attention_mask: (B, S) 1 for real tokens, 0 for padding.
    """

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor


def range_causal_mask(
    config,
    x: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cache: Cache | None,
    position_ids: torch.Tensor,
    lo: int,
    allow_is_causal_skip: bool = True,
) -> torch.Tensor | None:
    """The causal mask for a layer range starting at `lo`, sized against that layer's own cache length.

    One new token attends to every real slot of the cache: under SDPA that needs no mask without padding, and the
    padding mask itself, (B, 1, 1, S) booleans, with it. These are transformers' own answers for the case, returned
    here without building its arguments, since drafting asks for a mask at every token. A cache that knows each
    row's own offsets (a `slot_attention_mask` method: the preallocated cache of `decoding/kv_cache.py`) builds the
    mask itself.
    """
    slot_mask = getattr(cache, "slot_attention_mask", None)
    if slot_mask is not None:
        additive = getattr(config, "_attn_implementation", None) == "eager"
        return slot_mask(x.shape[1], x.dtype, additive, may_skip=allow_is_causal_skip and not additive)
    if (allow_is_causal_skip and cache is not None and x.shape[1] == 1
            and getattr(config, "_attn_implementation", None) == "sdpa"
            and getattr(config, "sliding_window", None) is None):
        return None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    return create_causal_mask(
        config=config,
        inputs_embeds=x,
        attention_mask=attention_mask,
        cache=cache,
        position_ids=position_ids,
        layer_idx=lo if cache is not None else None,
        allow_is_causal_skip=allow_is_causal_skip,
    )


class SplitDecoder(nn.Module, ABC):
    """An LLM decoder exposed layer range by layer range over a shared cache.

    Shapes: token ids (B, T); states x_l (B, T, D); logits (B, T, V). `position_ids` (B, T) are absolute positions
    of the new tokens; `attention_mask` (B, past + T) marks padding over everything the layer range will attend to
    (None when there is no padding).
    """

    is_encoder_decoder: bool = False

    @property
    @abstractmethod
    def layers(self) -> nn.ModuleList:
        """The L decoder layers, in order."""

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width D of the residual stream x_l."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of logits V the head produces."""

    @abstractmethod
    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings as the VLM merges image features into them (before any position term)."""

    @abstractmethod
    def embed(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """x_0 from token (or image-merged) embeddings: adds learned positions / input projections if any."""

    @abstractmethod
    def run_layers(
        self,
        x: torch.Tensor,
        lo: int,
        hi: int,
        cache: Cache | None,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder: EncoderOutput | None = None,
    ) -> torch.Tensor:
        """Runs layers [lo, hi) on x_lo and returns x_hi, appending the new keys/values to `cache`."""

    @abstractmethod
    def head(self, x: torch.Tensor) -> torch.Tensor:
        """g(x): the final norm (and output projection) followed by the LM head. (B, T, D) -> (B, T, V)."""

    @abstractmethod
    def output_projections(self, layer_idx: int) -> list[nn.Linear]:
        """The linear maps that write into the residual stream in one layer (attention out, MLP out)."""

    def new_cache(self) -> Cache:
        return DynamicCache()

    def self_attention_cache(self, cache: Cache) -> Cache:
        return cache

    def cache_length(self, cache: Cache, layer_idx: int) -> int:
        return self.self_attention_cache(cache).get_seq_length(layer_idx)

    def crop_layers(self, cache: Cache, lo: int, hi: int, length: int) -> None:
        """Crops layers [lo, hi) of the self-attention cache to hold `length` tokens."""
        self_cache = self.self_attention_cache(cache)
        for idx in range(lo, hi):
            extra = self_cache.get_seq_length(idx) - length
            if extra < 0:
                raise ValueError(f"cache layer {idx} holds fewer than {length} tokens; cannot crop to it")
            if extra:
                self_cache.layers[idx].crop(-extra)

    def full_forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder: EncoderOutput | None = None,
    ) -> torch.Tensor:
        """Logits of the whole decoder: embed -> layers [0, L) -> head."""
        x = self.embed(inputs_embeds, position_ids)
        x = self.run_layers(x, 0, self.num_layers, cache, position_ids, attention_mask, encoder)
        return self.head(x)

    def layer_states(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder: EncoderOutput | None = None,
        keep: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Teacher-forced residual states [x_0, x_1, ..., x_L] (before the final norm), without a cache.

        `keep` (L, B) booleans applies layer dropout (LayerSkip, `models/components/layerskip.py`): where keep[l, b]
        is False, layer l passes sample b's state through unchanged, x_{l+1} = x_l. The layer still runs on the
        whole batch and the rows are blended: dropping rows from the batch would mean slicing every family's
        masks, positions and encoder states, for a saving only training would see. None runs every layer.
        """
        L = self.num_layers
        if keep is not None and keep.shape != (L, inputs_embeds.shape[0]):
            raise ValueError(f"layer keep mask must be (L, B) = {(L, inputs_embeds.shape[0])}, got "
                             f"{tuple(keep.shape)}")
        states = [self.embed(inputs_embeds, position_ids)]
        for idx in range(L):
            x = self.run_layers(states[-1], idx, idx + 1, None, position_ids, attention_mask, encoder)
            if keep is not None:
                x = torch.where(keep[idx].to(x.device)[:, None, None], x, states[-1])
            states.append(x)
        return states
