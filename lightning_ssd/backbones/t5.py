"""Flan-T5 decoder (BLIP-2 Flan-T5) behind the split-decoder interface.

T5 computes its relative position bias once, in the first layer, and shares it with every later layer. A layer
range that does not start at layer 0 must therefore be handed that bias, computed for the query positions and
key length of the range; `run_layers` does this for every range, so [0, n) and [n, L) both match the full stack.
T5's own bias reads positions off cache slots; when an attention mask marks slots that hold no token (rows of a
batch that accepted fewer drafts), the bias is computed per row from the true positions of the real slots.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import T5ForConditionalGeneration
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder, range_causal_mask


class T5SplitDecoder(SplitDecoder):
    """Wraps the decoder stack of `T5ForConditionalGeneration`, its cross-attention and (scaled) LM head."""

    is_encoder_decoder = True

    def __init__(self, lm: T5ForConditionalGeneration) -> None:
        super().__init__()
        self.lm = lm
        self.decoder = lm.decoder

    @property
    def layers(self) -> nn.ModuleList:
        return self.decoder.block

    @property
    def hidden_size(self) -> int:
        return self.lm.config.d_model

    @property
    def vocab_size(self) -> int:
        return self.lm.lm_head.out_features

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.embed_tokens(input_ids)

    def embed(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.dropout(inputs_embeds)

    def new_cache(self) -> Cache:
        return EncoderDecoderCache(DynamicCache(), DynamicCache())

    def self_attention_cache(self, cache: Cache) -> Cache:
        return cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache

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
        if encoder is None:
            raise ValueError("the T5 decoder needs the encoder output (cross-attention); got encoder=None")
        self_cache = self.self_attention_cache(cache) if cache is not None else None
        past = self_cache.get_seq_length(lo) if self_cache is not None else 0
        mask = range_causal_mask(
            self.decoder.config, x, attention_mask, self_cache, position_ids, lo, allow_is_causal_skip=False
        )
        encoder_mask = create_bidirectional_mask(
            config=self.decoder.config,
            inputs_embeds=x,
            attention_mask=encoder.attention_mask,
            encoder_hidden_states=encoder.hidden_states,
        )
        slots = getattr(self_cache, "slot_attention_mask", None) is not None  # decoding/kv_cache.py
        position_bias = self._position_bias(x, past, position_ids, attention_mask, slots)
        for layer in self.layers[lo:hi]:
            x, _, _ = layer(
                x,
                attention_mask=mask,
                position_bias=position_bias,
                encoder_hidden_states=encoder.hidden_states,
                encoder_attention_mask=encoder_mask,
                cache=cache,
            )
        return x

    def _position_bias(
        self, x: torch.Tensor, past: int, position_ids: torch.Tensor, attention_mask: torch.Tensor | None,
        slots: bool = False,
    ) -> torch.Tensor:
        """(1 or B, H, T, past + T) relative position bias of the new tokens against every cached slot.

        With `slots` (a per-row slot cache whose `past` is the pass's width), slot j holds position j in every row.
        """
        attention = self.layers[0].layer[0].SelfAttention
        if slots:
            key_positions = torch.arange(past, device=x.device).unsqueeze(0)  # (1, W)
        elif attention_mask is None:
            return attention.compute_bias(x.shape[1], past + x.shape[1], x.device, past_seen_tokens=past)
        else:
            key_positions = attention_mask.long().cumsum(-1) - 1  # (B, past + T): true positions of real slots
        relative = key_positions[:, None, :] - position_ids[:, :, None]  # (B, T, past + T)
        buckets = attention._relative_position_bucket(
            relative,
            bidirectional=False,
            num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        return attention.relative_attention_bias(buckets).permute(0, 3, 1, 2)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.decoder.dropout(self.decoder.final_layer_norm(x))
        if self.lm.config.scale_decoder_outputs:
            x = x * (self.lm.config.d_model**-0.5)
        return self.lm.lm_head(x)

    def output_projections(self, layer_idx: int) -> list[nn.Linear]:
        block = self.layers[layer_idx]
        return [block.layer[0].SelfAttention.o, block.layer[1].EncDecAttention.o, block.layer[-1].DenseReluDense.wo]
