"""Turning samples into the batch dict that training and decoding read.

Batch contract (``B`` samples):

- ``pixel_values``: FloatTensor from the processor's image processor, in the family's layout: (B, 3, H, W);
  LLaVA-NeXT: (B, tiles, 3, H, W) with ``image_sizes`` (B, 2); Qwen2.5-VL: (patches, C * T * P * P), every image's
  patches one after another, with ``image_grid_thw`` (B, 3). `vision_inputs(batch)` picks what a family has.
- ``input_ids``, ``attention_mask``: teacher-forcing input. Decoder-only families (blip2-opt, llava):
  prompt + target + eos, right-padded, with the processor's image placeholders in place. blip2-t5: the
  encoder prompt only, right-padded.
- ``labels``: decoder-only: the shape of ``input_ids``, -100 on image placeholders, prompt and padding.
  blip2-t5: target ids + eos, right-padded with -100. (Qwen2.5-VL's answers end on ``<|im_end|>``.)
- ``prompt_input_ids``, ``prompt_attention_mask``: the prompt only (with image placeholders), left-padded,
  for generation.
- ``references``: list[list[str]]; ``sample_ids``: list; ``task``: str.
- VisDial only: ``candidates`` (list of 100 strings per sample) and ``gt_index`` (LongTensor; -1 where
  the split has no ground truth).

A sample without target (a test split) gets an empty target: its labels hold eos alone. Samples that the
dataset skipped (None) are dropped; a batch left empty is None.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.processing_utils import ProcessorMixin

from lightning_ssd.backbones.vlm import VISION_KEYS
from lightning_ssd.data.prompts import answer_end, build_prompt, check_family, target_separator
from lightning_ssd.data.readers.base import Sample

IGNORE_INDEX = -100


def _pad(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(r) for r in rows)
    padded = [[value] * (width - len(r)) + r if left else r + [value] * (width - len(r)) for r in rows]
    return torch.tensor(padded, dtype=torch.long)


def _image_tensors(encoded: Any) -> dict[str, torch.Tensor]:
    """pixel_values, float32, and the family's other image inputs the processor returned."""
    pixels = encoded["pixel_values"]
    pixels = pixels if isinstance(pixels, torch.Tensor) else torch.as_tensor(np.stack(pixels))
    out = {"pixel_values": pixels.to(torch.float32)}
    for key in VISION_KEYS:
        if key in encoded:
            out[key] = torch.as_tensor(np.asarray(encoded[key]), dtype=torch.long)
    return out


class VLCollator:
    """Build batches for one backbone family from :class:`~lightning_ssd.data.readers.base.Sample` lists.

    Args:
        processor: the backbone's processor (``Blip2Processor``, ``LlavaProcessor``, ...); it adds the image
            placeholders.
        family: the backbone family (`lightning_ssd.data.prompts.FAMILIES`).
        task: the dataset's task ("caption", "vqa", "visdial", "instruct", "long"); selects the prompt.
        max_target_length: the longest target in tokens, eos included; longer targets are cut.
    """

    def __init__(self, processor: ProcessorMixin, family: str, task: str, max_target_length: int = 64) -> None:
        if max_target_length < 1:
            raise ValueError(f"max_target_length must be >= 1, got {max_target_length}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.family = check_family(family)
        self.task = task
        self.max_target_length = max_target_length
        if self.tokenizer.pad_token_id is None or self.tokenizer.eos_token_id is None:
            raise ValueError(f"the tokenizer of {type(processor).__name__} needs a pad and an eos token")
        self.image_token = str(getattr(processor, "image_token", "<image>"))
        end = answer_end(family, self.tokenizer.eos_token)
        self.end_id = self.tokenizer.convert_tokens_to_ids(end)
        if self.end_id is None or self.end_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer of {type(processor).__name__} has no {end!r} token to end answers with")

    def prompt(self, sample: Sample) -> str:
        r = sample.record
        return build_prompt(self.family, self.task, r.query, r.context, r.history, self.image_token,
                            self.tokenizer.eos_token)

    def _target_ids(self, prompt: str, target: str) -> list[int]:
        """Target token ids followed by the answer's end (eos), cut to ``max_target_length``."""
        tok, eos = self.tokenizer, self.end_id
        if not target:
            ids: list[int] = []
        elif self.family == "blip2-t5":
            ids = tok(target, add_special_tokens=False).input_ids
        else:
            # Tokenise the target in context, so its first token has the spacing it has after the prompt;
            # fall back to tokenising it alone if the prompt's tokens change at the boundary.
            prompt_ids = tok(prompt).input_ids
            full_ids = tok(f"{prompt}{target_separator(self.family)}{target}").input_ids
            if full_ids[: len(prompt_ids)] == prompt_ids:
                ids = full_ids[len(prompt_ids):]
            else:
                ids = tok(f" {target}", add_special_tokens=False).input_ids
        if ids and ids[-1] == self.tokenizer.eos_token_id:  # tokenizers that append eos themselves (T5)
            ids = ids[:-1]
        return ids[: self.max_target_length - 1] + [eos]

    def __call__(self, samples: Sequence[Sample | None]) -> dict[str, Any] | None:
        kept = [s for s in samples if s is not None]
        if not kept:
            return None
        prompts = [self.prompt(s) for s in kept]
        encoded = self.processor(images=[s.image for s in kept], text=prompts)
        prompt_ids: list[list[int]] = [list(ids) for ids in encoded["input_ids"]]
        targets = [self._target_ids(p, s.record.target or "") for p, s in zip(prompts, kept, strict=True)]
        pad = self.tokenizer.pad_token_id

        if self.family == "blip2-t5":
            input_rows, label_rows = prompt_ids, targets
        else:
            input_rows = [p + t for p, t in zip(prompt_ids, targets, strict=True)]
            label_rows = [[IGNORE_INDEX] * len(p) + t for p, t in zip(prompt_ids, targets, strict=True)]
        batch: dict[str, Any] = {
            **_image_tensors(encoded),
            "input_ids": _pad(input_rows, pad, left=False),
            "attention_mask": _pad([[1] * len(r) for r in input_rows], 0, left=False),
            "labels": _pad(label_rows, IGNORE_INDEX, left=False),
            "prompt_input_ids": _pad(prompt_ids, pad, left=True),
            "prompt_attention_mask": _pad([[1] * len(r) for r in prompt_ids], 0, left=True),
            "references": [list(s.record.references) for s in kept],
            "sample_ids": [s.record.sample_id for s in kept],
            "indices": [s.index for s in kept],
            "images": [str(s.record.image) if isinstance(s.record.image, Path) else None for s in kept],
            "queries": [s.record.query for s in kept],
            "task": self.task,
        }
        if self.task == "visdial":
            batch["candidates"] = [list(s.record.candidates or ()) for s in kept]
            batch["gt_index"] = torch.tensor([-1 if s.record.gt_index is None else s.record.gt_index for s in kept],
                                             dtype=torch.long)
        return batch
