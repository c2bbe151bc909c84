"""Benchmark metrics as ``torchmetrics.Metric`` subclasses, correct under DDP.

Scores are percentages (x100) as in papers' tables, except VisDial ``mean_rank`` (a rank, 1 = best).
"""

from lightning_ssd.metrics.captioning import CaptionScores
from lightning_ssd.metrics.judge import JudgedScore
from lightning_ssd.metrics.judge_client import ChatJudge, JudgeError, JudgeRequestError, OpenAICompatibleJudge
from lightning_ssd.metrics.visdial import VisDialRanking
from lightning_ssd.metrics.vqa import ExactMatch, VQAAccuracy, normalize_vqa_answer, vqa_accuracy

__all__ = [
    "CaptionScores",
    "ChatJudge",
    "ExactMatch",
    "JudgeError",
    "JudgeRequestError",
    "JudgedScore",
    "OpenAICompatibleJudge",
    "VQAAccuracy",
    "VisDialRanking",
    "normalize_vqa_answer",
    "vqa_accuracy",
]
