"""Qwen2.5-VL's decoder (a Qwen2 LLM with multimodal rotary positions) behind the split-decoder interface.

M-RoPE rotates each head's dimensions by three positions (time, height, width): image tokens take their grid
coordinates, text tokens one position on all three axes. `run_layers` takes position ids of shape (3, B, T) as the
prompt needs them, or (B, T) for generated tokens, whose three positions are equal (the prompt object carries the
rope offset that makes them continue the prompt's positions, so the decoding engine needs no branch for it).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache

from lightning_ssd.backbones.decoder import EncoderOutput, range_causal_mask
from lightning_ssd.backbones.llama import LlamaSplitDecoder


class Qwen2VLSplitDecoder(LlamaSplitDecoder):
    """Wraps a `Qwen2_5_VLTextModel` and its (untied) LM head: the Llama layout (embeddings, RMSNorm, head, output
    projections) with M-RoPE per layer range."""

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
        positions = position_ids if position_ids.ndim == 3 else position_ids.unsqueeze(0).expand(3, -1, -1)
        # the mask needs no positions (transformers passes none for unpacked M-RoPE inputs either)
        mask = range_causal_mask(self.model.config, x, attention_mask, cache, None, lo)
        position_embeddings = self.model.rotary_emb(x, positions)
        for layer in self.layers[lo:hi]:
            x = layer(x, attention_mask=mask, position_embeddings=position_embeddings, cache=cache,
                      use_cache=cache is not None)
        return x
