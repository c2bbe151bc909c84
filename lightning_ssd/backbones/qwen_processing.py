"""A Qwen2.5-VL processor that needs no torchvision: the image processor (PIL backend) and the tokenizer, joined.

transformers' `Qwen2_5_VLProcessor` insists on a video processor, and every video processor needs torchvision, for
which no build fits the CPU torch here; `AutoProcessor.from_pretrained` therefore fails on any Qwen2-VL-family
folder. Images need none of that: this class expands each `<|image_pad|>` into one placeholder per merged patch of
its image, as the original does, and returns the same keys (`pixel_values`, `image_grid_thw`, `input_ids`,
`attention_mask`, `mm_token_type_ids`). Videos are not supported; with torchvision installed, transformers' own
processor works as well and also takes videos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

IMAGE_PAD = "<|image_pad|>"


class Qwen2VLImageTextProcessor:
    """`processor(images=[...], text=[...], padding=True, return_tensors="pt")` for Qwen2.5-VL, images only.

    Args:
        image_processor: Qwen2-VL's image processor (`Qwen2VLImageProcessorPil`).
        tokenizer: the model's tokenizer, which knows `<|image_pad|>`.
    """

    def __init__(self, image_processor: Qwen2VLImageProcessorPil, tokenizer: PreTrainedTokenizerBase) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token = IMAGE_PAD
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)

    def __call__(self, images: list | None = None, text: str | list[str] | None = None, **kwargs: Any) -> BatchFeature:
        texts = [text] if isinstance(text, str) else list(text or [])
        out: dict[str, Any] = {}
        if images is not None:
            vision = self.image_processor(images=images, return_tensors="pt")
            out.update(pixel_values=vision["pixel_values"], image_grid_thw=vision["image_grid_thw"])
            tokens_per_image = iter((vision["image_grid_thw"].prod(-1) // self.image_processor.merge_size**2).tolist())
            texts = [self._expand(t, tokens_per_image) for t in texts]
        return_tensors = kwargs.pop("return_tensors", None)
        encoded = self.tokenizer(texts, return_tensors=return_tensors, **kwargs)
        out.update(encoded)
        ids = encoded["input_ids"]
        ids = ids if isinstance(ids, torch.Tensor) else torch.tensor(ids) if return_tensors else None
        if ids is not None:
            out["mm_token_type_ids"] = (ids == self.image_token_id).int()
        return BatchFeature(out)

    def _expand(self, text: str, tokens_per_image) -> str:
        parts = text.split(IMAGE_PAD)
        expanded = []
        for part in parts[:-1]:
            count = next(tokens_per_image, None)
            if count is None:
                raise ValueError(f"the text holds more {IMAGE_PAD} placeholders than images were given")
            expanded.append(part + IMAGE_PAD * count)
        return "".join(expanded) + parts[-1]

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Qwen2VLImageTextProcessor:
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        return cls(image_processor, AutoTokenizer.from_pretrained(path, local_files_only=True))
