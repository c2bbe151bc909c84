"""Llama decoder (LLaVA-1.5) behind the split-decoder interface."""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder, range_causal_mask


class LlamaSplitDecoder(SplitDecoder):
    """Wraps a `LlamaModel` and its LM head: rotary positions per layer range, final RMSNorm, head."""

    def __init__(self, model: nn.Module, lm_head: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.lm_head = lm_head

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.lm_head.out_features

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def embed(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return inputs_embeds

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
        mask = range_causal_mask(self.model.config, x, attention_mask, cache, position_ids, lo)
        position_embeddings = self.model.rotary_emb(x, position_ids=position_ids)
        for layer in self.layers[lo:hi]:
            x = layer(
                x,
                attention_mask=mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                cache=cache,
                use_cache=cache is not None,
            )
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model.norm(x))

    def output_projections(self, layer_idx: int) -> list[nn.Linear]:
        layer = self.layers[layer_idx]
        return [layer.self_attn.o_proj, layer.mlp.down_proj]
