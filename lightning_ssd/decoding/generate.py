"""Batch entry point: encode image + prompt once, then decode each sequence with a chosen decoder."""

from __future__ import annotations

from typing import Protocol

import torch
from transformers import GenerationConfig

from lightning_ssd.backbones.vlm import DecoderPrompt, SplitVLM
from lightning_ssd.decoding.result import GenerationResult, SequenceResult

# Generation settings that change greedy output; the engine implements plain argmax only.
_UNSUPPORTED = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": None,
    "bad_words_ids": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "num_beams": 1,
}


class SequenceDecoder(Protocol):
    def decode(self, prompt: DecoderPrompt, max_new_tokens: int) -> SequenceResult: ...


def check_greedy_config(config: GenerationConfig) -> None:
    """Refuses generation settings under which plain argmax would not reproduce the model's generate()."""
    for key, neutral in _UNSUPPORTED.items():
        value = getattr(config, key, neutral)
        if value not in (neutral, None) and not (key == "min_length" and value == 0):
            raise ValueError(
                f"generation_config.{key}={value!r} is not supported by greedy self-speculative decoding; "
                f"set it to {neutral!r} in the checkpoint's generation_config.json"
            )


@torch.inference_mode()
def generate(
    vlm: SplitVLM,
    decoder: SequenceDecoder,
    pixel_values: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 30,
) -> GenerationResult:
    """Greedy generation for a (left-padded) batch, one sequence at a time inside.

    Returns the new tokens only (the prompt is not repeated), each ending at its first EOS or at
    `max_new_tokens`, exactly where transformers' `generate(do_sample=False)` ends them.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    check_greedy_config(vlm.model.generation_config)
    prompt = vlm.encode(pixel_values, input_ids, attention_mask)
    return GenerationResult(tuple(decoder.decode(prompt.select(i), max_new_tokens) for i in range(len(input_ids))))
