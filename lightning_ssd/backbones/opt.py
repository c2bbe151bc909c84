"""OPT decoder (BLIP-2 OPT) behind the split-decoder interface."""

from __future__ import annotations

import torch
from torch import nn
from transformers import OPTForCausalLM
from transformers.cache_utils import Cache

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder, range_causal_mask


class OPTSplitDecoder(SplitDecoder):
    """Wraps `OPTForCausalLM`: learned positions, optional project_in/out, final layer norm, LM head."""

    def __init__(self, lm: OPTForCausalLM) -> None:
        super().__init__()
        self.lm = lm
        self.decoder = lm.model.decoder

    @property
    def layers(self) -> nn.ModuleList:
        return self.decoder.layers

    @property
    def hidden_size(self) -> int:
        return self.lm.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.lm.lm_head.out_features

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.embed_tokens(input_ids)

    def embed(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        if self.decoder.project_in is not None:
            inputs_embeds = self.decoder.project_in(inputs_embeds)
        positions = self.decoder.embed_positions(None, 0, position_ids=position_ids)
        return inputs_embeds + positions.to(inputs_embeds.dtype)

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
        mask = range_causal_mask(self.lm.config, x, attention_mask, cache, position_ids, lo)
        for layer in self.layers[lo:hi]:
            x = layer(x, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=cache is not None)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        if self.decoder.final_layer_norm is not None:
            x = self.decoder.final_layer_norm(x)
        if self.decoder.project_out is not None:
            x = self.decoder.project_out(x)
        return self.lm.lm_head(x)

    def output_projections(self, layer_idx: int) -> list[nn.Linear]:
        layer = self.layers[layer_idx]
        return [layer.self_attn.out_proj, layer.fc2]
