"""Benchmark inputs: images and prompts of the embedded benchmark's test split, through the backbone's processor."""

from __future__ import annotations

import torch
from transformers import ProcessorMixin

from lightning_ssd.data.prompts import build_prompt
from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item


def benchmark_inputs(
    processor: ProcessorMixin,
    family: str,
    num_samples: int,
    task: str = "caption",
    seed: int = 0,
    batch_size: int = 1,
    split: str = "test",
) -> list[dict[str, torch.Tensor]]:
    """The processor's outputs (pixel_values, input_ids, attention_mask, and the family's others such as
    image_grid_thw) for `batch_size` samples each (the last may be smaller).

    Prompts are padded as the training collate pads them: on the left, except for Flan-T5's encoder (right).
    `split` "val" gives held-out images for tuning (Draft & Verify's skip set), apart from the timed test images.
    """
    config = SyntheticConfig(seed=seed)
    query = None if task == "caption" else "Describe the image in detail."
    prompt = build_prompt(family, task, query=query, image_token=str(getattr(processor, "image_token", "<image>")))
    tokenizer = processor.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "right" if family == "blip2-t5" else "left"
    try:
        batches = []
        for start in range(0, num_samples, batch_size):
            indices = range(start, min(num_samples, start + batch_size))
            images = [generate_item(config, split, i).image for i in indices]
            encoded = processor(images=images, text=[prompt] * len(images), padding=True, return_tensors="pt")
            batches.append(dict(encoded))
    finally:
        tokenizer.padding_side = side
    return batches
