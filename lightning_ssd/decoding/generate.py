"""Batch entry point: encode image + prompt once, then decode the whole batch with a chosen decoder."""

from __future__ import annotations

from typing import Protocol

import torch
from transformers import GenerationConfig

from lightning_ssd.backbones.vlm import DecoderPrompt, SplitVLM
from lightning_ssd.decoding.acceptance import AcceptanceRule, acceptance_rule
from lightning_ssd.decoding.result import GenerationResult, SequenceResult


class BatchDecoder(Protocol):
    def decode(
        self, prompt: DecoderPrompt, max_new_tokens: int, rule: AcceptanceRule | None = None
    ) -> tuple[SequenceResult, ...]: ...




def _check_inputs(vlm: SplitVLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  generator: torch.Generator | None) -> None:
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids "
                         f"{tuple(input_ids.shape)}; they must match")
    if generator is not None:
        model_device = next(vlm.parameters()).device
        if torch.device(generator.device).type != model_device.type:
            raise ValueError(f"generator is on {generator.device} but the model is on {model_device}; create it "
                             f"with torch.Generator(device={str(model_device)!r})")


@torch.inference_mode()
def generate(
    vlm: SplitVLM,
    decoder: BatchDecoder,
    pixel_values: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 30,
    generation_config: GenerationConfig | None = None,
    generator: torch.Generator | None = None,
    **processor_outputs: torch.Tensor,
) -> GenerationResult:
    """Generation for a (left-padded) batch, decoded as one batch.

    Returns the new tokens only (the prompt is not repeated), each ending at its first EOS or at `max_new_tokens`,
    exactly where transformers' `generate` ends them. Greedy unless the generation config (default: the
    checkpoint's own) sets `do_sample`; sampling is lossless speculative sampling, reproducible with `generator`.
    The processor's other outputs (`image_grid_thw`, ...) are passed on as keyword arguments, so
    `generate(vlm, decoder, **processor(images=..., text=..., return_tensors="pt"), max_new_tokens=...)` works.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    _check_inputs(vlm, input_ids, attention_mask, generator)
    rule = acceptance_rule(generation_config or vlm.model.generation_config, generator)
    prompt = vlm.encode(pixel_values, input_ids, attention_mask, **processor_outputs)
    return GenerationResult(decoder.decode(prompt, max_new_tokens, rule))
