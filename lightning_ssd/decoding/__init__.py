"""Decoding: plain greedy, draft-only and self-speculative decoding over a split decoder. Pure torch."""

from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import BatchDecoder, generate
from lightning_ssd.decoding.result import Cycle, GenerationResult, SequenceResult
from lightning_ssd.decoding.schedule import DraftLength, DynamicDraftLength, FixedDraftLength, draft_length

__all__ = [
    "CostModel",
    "Cycle",
    "DraftLength",
    "DraftOnlyDecoder",
    "DynamicDraftLength",
    "FixedDraftLength",
    "GenerationResult",
    "GreedyDecoder",
    "SelfSpeculativeDecoder",
    "BatchDecoder",
    "SequenceResult",
    "draft_length",
    "generate",
    "measure_cost_model",
]
