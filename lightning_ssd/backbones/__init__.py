"""Backbones: transformers VLMs (presets or local checkpoints) with their LLM decoder split at any layer."""

from lightning_ssd.backbones.decoder import EncoderOutput, SplitDecoder
from lightning_ssd.backbones.loading import (
    CheckpointError,
    absolute_backbone,
    check_backbone,
    family_of,
    load_backbone,
    load_processor,
    save_backbone,
)
from lightning_ssd.backbones.presets import PRESETS
from lightning_ssd.backbones.vlm import DecoderPrompt, Family, SplitVLM

__all__ = [
    "PRESETS",
    "CheckpointError",
    "DecoderPrompt",
    "EncoderOutput",
    "Family",
    "SplitDecoder",
    "SplitVLM",
    "absolute_backbone",
    "check_backbone",
    "family_of",
    "load_backbone",
    "load_processor",
    "save_backbone",
]
