"""Benchmark inputs: images and prompts of the embedded benchmark's test split, through the backbone's processor."""

from __future__ import annotations

import torch
from transformers import ProcessorMixin

from lightning_ssd.data.prompts import build_prompt
from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item


def benchmark_inputs(
    processor: ProcessorMixin, family: str, num_samples: int, task: str = "caption", seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """One batch-size-1 input dict per sample (pixel_values, input_ids, attention_mask)."""
    config = SyntheticConfig(seed=seed)
    samples = []
    for index in range(num_samples):
        item = generate_item(config, "test", index)
        query = None if task == "caption" else "Describe the image in detail."
        prompt = build_prompt(family, task, query=query)
        encoded = processor(images=[item.image], text=[prompt], return_tensors="pt")
        samples.append({k: encoded[k] for k in ("pixel_values", "input_ids", "attention_mask")})
    return samples
