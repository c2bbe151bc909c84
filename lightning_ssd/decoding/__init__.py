"""Decoding: batched plain, draft-only and speculative decoders over a split decoder. Pure torch."""

from lightning_ssd.decoding.acceptance import AcceptanceRule, GreedyAcceptance, SpeculativeSampling, acceptance_rule
from lightning_ssd.decoding.checks import MODES
from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.decoding.drafters import Draft, Drafter, ShallowDrafter
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder, SpeculativeDecoder
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder, generate
from lightning_ssd.decoding.result import Cycle, GenerationResult, SequenceResult
from lightning_ssd.decoding.schedule import DraftLength, DynamicDraftLength, FixedDraftLength, draft_length
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold, SkipLayerDrafter
from lightning_ssd.decoding.spec import DraftSpec

__all__ = [
    "MODES",
    "AcceptanceRule",
    "AdaptiveThreshold",
    "BatchDecoder",
    "CostModel",
    "Cycle",
    "Draft",
    "DraftLength",
    "DraftOnlyDecoder",
    "DraftSpec",
    "Drafter",
    "DynamicDraftLength",
    "FixedDraftLength",
    "GenerationResult",
    "GreedyAcceptance",
    "GreedyDecoder",
    "SelfSpeculativeDecoder",
    "SequenceResult",
    "ShallowDrafter",
    "SkipLayerDrafter",
    "SpeculativeDecoder",
    "SpeculativeSampling",
    "acceptance_rule",
    "build_decoder",
    "draft_length",
    "generate",
    "measure_cost_model",
]
