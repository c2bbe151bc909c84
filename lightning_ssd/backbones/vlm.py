"""A transformers VLM (BLIP-2 OPT, BLIP-2 Flan-T5, LLaVA, LLaVA-NeXT, Qwen2.5-VL) seen as image prefix + split
decoder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    Blip2ForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    PreTrainedModel,
    Qwen2_5_VLForConditionalGeneration,
)

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder
from lightning_ssd.backbones.llama import LlamaSplitDecoder
from lightning_ssd.backbones.opt import OPTSplitDecoder
from lightning_ssd.backbones.qwen import Qwen2VLSplitDecoder
from lightning_ssd.backbones.t5 import T5SplitDecoder

Family = Literal["blip2-opt", "blip2-t5", "llava", "llava-next", "qwen2.5-vl"]
FAMILIES: tuple[str, ...] = ("blip2-opt", "blip2-t5", "llava", "llava-next", "qwen2.5-vl")
# image inputs beside pixel_values that a family's processor returns and its vision encoder needs
VISION_KEYS: tuple[str, ...] = ("image_grid_thw", "image_sizes")


def vision_inputs(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """`pixel_values` and whichever of `VISION_KEYS` a batch holds, as keyword arguments of `SplitVLM.encode`."""
    return {key: batch[key] for key in ("pixel_values", *VISION_KEYS) if key in batch}


@dataclass
class DecoderPrompt:
    """What the LLM decoder starts from, once the image has been encoded.

    Attributes:
        inputs_embeds: (B, T, D) prompt embeddings with image features merged in (T5: the decoder start token).
        attention_mask: (B, T) 1 for real tokens, 0 for (left) padding.
        position_ids: (B, T) absolute positions of the prompt tokens, or (3, B, T) multimodal rotary positions
            (Qwen2.5-VL: time, height, width).
        encoder: the encoder output for encoder-decoder LLMs (Flan-T5), else None.
        next_position: (B,) position of each row's first generated token; None: its number of real prompt tokens
            (M-RoPE continues after the largest prompt position instead).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    encoder: EncoderOutput | None = None
    next_position: torch.Tensor | None = None

    def select(self, index: int) -> DecoderPrompt:
        """The prompt of one sequence of the batch, with its padding removed."""
        keep = self.attention_mask[index].bool()
        encoder = None
        if self.encoder is not None:
            enc_keep = self.encoder.attention_mask[index].bool()
            encoder = EncoderOutput(
                self.encoder.hidden_states[index : index + 1, enc_keep],
                self.encoder.attention_mask[index : index + 1, enc_keep],
            )
        length = int(keep.sum())
        return DecoderPrompt(
            inputs_embeds=self.inputs_embeds[index : index + 1, keep],
            attention_mask=torch.ones(1, length, dtype=torch.long, device=self.attention_mask.device),
            position_ids=torch.arange(length, device=self.attention_mask.device).unsqueeze(0),
            encoder=encoder,
        )


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as transformers' generate computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def family_of_model(model: PreTrainedModel) -> Family:
    if isinstance(model, LlavaForConditionalGeneration):
        return "llava"
    if isinstance(model, Qwen2_5_VLForConditionalGeneration):
        return "qwen2.5-vl"
    if isinstance(model, LlavaNextForConditionalGeneration):
        return "llava-next"
    if isinstance(model, Blip2ForConditionalGeneration):
        return "blip2-t5" if model.config.text_config.is_encoder_decoder else "blip2-opt"
    raise TypeError(
        f"unsupported model class {type(model).__name__}; expected Blip2ForConditionalGeneration (OPT or Flan-T5), "
        "LlavaForConditionalGeneration, LlavaNextForConditionalGeneration or Qwen2_5_VLForConditionalGeneration"
    )


def _split_decoder(model: PreTrainedModel, family: Family) -> SplitDecoder:
    if family in ("llava", "llava-next"):
        return LlamaSplitDecoder(model.model.language_model, model.lm_head)
    if family == "qwen2.5-vl":
        return Qwen2VLSplitDecoder(model.model.language_model, model.lm_head)
    if family == "blip2-opt":
        return OPTSplitDecoder(model.language_model)
    return T5SplitDecoder(model.language_model)


class SplitVLM(nn.Module):
    """A transformers VLM with its LLM decoder exposed as a `SplitDecoder`.

    Args:
        model: a `Blip2ForConditionalGeneration` (OPT or Flan-T5 text model), `LlavaForConditionalGeneration`,
            `LlavaNextForConditionalGeneration` or `Qwen2_5_VLForConditionalGeneration`.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.family: Family = family_of_model(model)
        self.model = model
        self.decoder = _split_decoder(model, self.family)

    @property
    def image_token_id(self) -> int:
        config = self.model.config
        return int(getattr(config, "image_token_id", None) or config.image_token_index)

    @property
    def eos_token_id(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.text_config.eos_token_id
        if eos is None:
            return []
        return [int(e) for e in eos] if isinstance(eos, list | tuple) else [int(eos)]

    @property
    def pad_token_id(self) -> int:
        pad = self.model.generation_config.pad_token_id
        if pad is None:
            pad = self.text_config.pad_token_id
        if pad is None:
            eos = self.eos_token_id
            pad = eos[0] if eos else 0
        return int(pad)

    @property
    def text_config(self):
        return self.model.config.text_config

    def image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None,
                       image_sizes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, Q, D): Q-Former queries projected to the LLM (BLIP-2) or projected patches (LLaVA);
        for Qwen2.5-VL, (patches, C * T * P * P) and the (B, 3) grids -> (1, sum of the merged patches, D); for
        LLaVA-NeXT, (B, tiles, 3, H, W) and the (B, 2) image sizes -> (1, sum of the packed features, D)."""
        if self.family == "llava-next":
            if image_sizes is None:
                raise ValueError("LLaVA-NeXT needs image_sizes (the image processor's output) with pixel_values")
            config = self.model.config
            out = self.model.model.get_image_features(
                pixel_values=pixel_values, image_sizes=image_sizes, vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy)
            return torch.cat(list(out.pooler_output)).unsqueeze(0)
        if self.family == "qwen2.5-vl":
            if image_grid_thw is None:
                raise ValueError("Qwen2.5-VL needs image_grid_thw (the image processor's output) with pixel_values")
            out = self.model.model.get_image_features(pixel_values=pixel_values, image_grid_thw=image_grid_thw)
            return torch.cat(list(out.pooler_output)).unsqueeze(0)
        if self.family == "llava":
            config = self.model.config
            out = self.model.model.get_image_features(
                pixel_values=pixel_values,
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            )
            return torch.stack(list(out.pooler_output))
        m = self.model
        image_embeds = m.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = m.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_output = m.qformer(
            query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask
        ).last_hidden_state
        return m.language_projection(query_output.to(image_embeds.dtype))

    def merge_image(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings (B, T, D) with the image features written over the image placeholder tokens."""
        embeds = self.decoder.embed_tokens(input_ids)
        features = self.image_features(pixel_values, image_grid_thw, image_sizes).to(embeds.dtype)
        placeholder = input_ids == self.image_token_id
        found, expected = int(placeholder.sum()), features.shape[0] * features.shape[1]
        if found != expected:
            raise ValueError(
                f"input_ids hold {found} image placeholder tokens (id {self.image_token_id}) but the vision encoder "
                f"produced {expected} features; build inputs with this backbone's processor"
            )
        return embeds.masked_scatter(placeholder.unsqueeze(-1), features)

    def check_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                     image_grid_thw: torch.Tensor | None = None) -> None:
        """One image per prompt, in this family's layout of pixel_values (Qwen2.5-VL's rows are patches: its
        grids count the images; a missing grid is named by `image_features`)."""
        if self.family == "qwen2.5-vl":
            if image_grid_thw is None:
                return
            images = image_grid_thw.shape[0]
        else:
            images = pixel_values.shape[0]
        if images != input_ids.shape[0]:
            raise ValueError(f"pixel_values holds {images} images but input_ids {input_ids.shape[0]} prompts; give "
                             "one image per prompt")

    def encode(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        **processor_outputs: torch.Tensor,
    ) -> DecoderPrompt:
        """Encodes image + prompt into the decoder's starting point (vision, Q-Former/projector, T5 encoder).

        `image_grid_thw` is Qwen2.5-VL's, `image_sizes` LLaVA-NeXT's; other processor outputs the prompt does not
        need (`mm_token_type_ids`, which the image placeholders already say) are accepted and ignored, so that
        `**processor(...)` works.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self.check_inputs(pixel_values, input_ids, image_grid_thw)
        embeds = self.merge_image(input_ids, pixel_values, image_grid_thw, image_sizes)
        if self.family == "qwen2.5-vl":
            return self._mrope_prompt(embeds, input_ids, attention_mask, image_grid_thw)
        if not self.decoder.is_encoder_decoder:
            return DecoderPrompt(embeds, attention_mask, positions_from_mask(attention_mask))
        encoder_states = self.model.language_model.encoder(
            inputs_embeds=embeds, attention_mask=attention_mask
        ).last_hidden_state
        batch = input_ids.shape[0]
        start = torch.full((batch, 1), self.text_config.decoder_start_token_id, device=input_ids.device)
        return DecoderPrompt(
            inputs_embeds=self.decoder.embed_tokens(start),
            attention_mask=torch.ones_like(start),
            position_ids=torch.zeros_like(start),
            encoder=EncoderOutput(encoder_states, attention_mask),
        )

    def _mrope_prompt(self, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      image_grid_thw: torch.Tensor) -> DecoderPrompt:
        """Qwen2.5-VL's 3-D positions of the prompt, and where each row's generated tokens continue them."""
        types = (input_ids == self.image_token_id).int()  # 1: image, 0: text
        positions, deltas = self.model.model.get_rope_index(input_ids, types, image_grid_thw=image_grid_thw,
                                                            attention_mask=attention_mask)
        next_position = attention_mask.long().sum(-1) + deltas.reshape(-1).to(attention_mask.device)
        return DecoderPrompt(embeds, attention_mask, positions, next_position=next_position)

    def teacher_forced(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        **image_inputs: torch.Tensor,
    ) -> tuple[DecoderPrompt, torch.Tensor]:
        """Decoder inputs for a teacher-forced pass and the targets aligned with its positions.

        Decoder-only families take `input_ids` = prompt + target (right-padded) and predict labels shifted by one;
        Flan-T5 encodes `input_ids` and feeds the right-shifted labels to its decoder. The returned targets (B, T)
        hold -100 where no loss applies, so `logits[targets != -100]` are the positions that predict a token.
        `image_inputs` are the family's other image inputs (`image_grid_thw`, `image_sizes`), as for `encode`.
        """
        if not self.decoder.is_encoder_decoder:
            prompt = self.encode(pixel_values, input_ids, attention_mask, **image_inputs)
            targets = torch.full_like(labels, -100)
            targets[:, :-1] = labels[:, 1:]
            return prompt, targets
        encoded = self.encode(pixel_values, input_ids, attention_mask, **image_inputs)
        start = torch.full_like(labels[:, :1], self.text_config.decoder_start_token_id)
        decoder_ids = torch.cat([start, labels[:, :-1]], dim=1).masked_fill(
            torch.cat([start, labels[:, :-1]], dim=1) == -100, self.pad_token_id
        )
        decoder_mask = torch.cat([torch.ones_like(start), (labels[:, :-1] != -100).long()], dim=1)
        prompt = DecoderPrompt(
            inputs_embeds=self.decoder.embed_tokens(decoder_ids),
            attention_mask=decoder_mask,
            position_ids=positions_from_mask(decoder_mask),
            encoder=encoded.encoder,
        )
        return prompt, labels
