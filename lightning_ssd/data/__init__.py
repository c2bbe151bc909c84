"""Benchmarks as LightningDataModules, the embedded synthetic benchmark, and the tiny presets' tokenizer.

Names are imported lazily, so that ``from lightning_ssd.data.tokenizer import default_tokenizer`` does not
pull in Lightning.
"""

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "VLDataModule": "base",
    "CocoCaptionDataModule": "coco",
    "NoCapsDataModule": "nocaps",
    "VisDialDataModule": "visdial",
    "VQAv2DataModule": "vqav2",
    "LlavaInstructDataModule": "llava_instruct",
    "LlavaBenchDataModule": "llava_bench",
    "MMVetDataModule": "mmvet",
    "SyntheticDataModule": "synthetic",
    "ImagesDataModule": "images",
    "VLCollator": "collate",
    "build_prompt": "prompts",
    "build_tokenizer": "tokenizer",
    "default_tokenizer": "tokenizer",
    "DatasetFileError": "io",
    "MalformedDataError": "io",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
