"""Decoding evaluation: every configured decoder on the same batches, with quality, acceptance and speed metrics.

Modes are those of `decoding.factory` (full, draft, draft_imit, ssd; "full" is the speed reference), and every
mode decodes each batch as one batch. Speedup of a mode = the full model's seconds per token / the mode's, both
measured on the same batches in the same steps: the first batch is decoded once untimed by every mode (a first call
pays one-time costs), each batch can be decoded `timing_repeats` times in turn (the run of median time counts), and
an SSD speedup above what its measured tau allows (`lightning_ssd.timing`) is warned about and logged beside its
bound, ``ssd/speedup_bound``. SSD must reproduce the full model's tokens exactly;
`ssd_identical` is the fraction that do, and each sequence that does not is kept as a `Mismatch` (where it first
departs), so a report can name it and a float64 rerun can tell a rounding tie from a defect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanMetric, Metric

from lightning_ssd.backbones.vlm import SplitVLM, vision_inputs
from lightning_ssd.decoding.generate import BatchDecoder, generate
from lightning_ssd.decoding.result import GenerationResult, SequenceResult
from lightning_ssd.metrics import CaptionScores, VQAAccuracy
from lightning_ssd.metrics.acceptance import AcceptanceStats
from lightning_ssd.timing import check_speedup, median_run

# Tasks scored as short answers; every other task (captions, dialog answers, long descriptions) by caption metrics.
_ANSWER_TASKS = ("vqa",)


@dataclass(frozen=True)
class DecodedSample:
    """One decoded sequence kept for display: the SSD run (tokens = the full model's) and its references."""

    sample_id: Any
    ssd: SequenceResult
    references: tuple[str, ...]


@dataclass(frozen=True)
class Mismatch:
    """An SSD sequence that is not the full model's: the sample, the first token where they differ, both tokens there
    (None where a sequence has already ended), and the two sequences' lengths."""

    sample_id: Any
    position: int
    full_token: int | None
    ssd_token: int | None
    full_length: int
    ssd_length: int


def first_mismatch(sample_id: Any, full: Sequence[int], ssd: Sequence[int]) -> Mismatch | None:
    """Where `ssd` first departs from `full`, or None if they are equal."""
    if list(full) == list(ssd):
        return None
    position = next((i for i, (a, b) in enumerate(zip(full, ssd, strict=False)) if a != b), min(len(full), len(ssd)))

    def token(seq: Sequence[int]) -> int | None:
        return int(seq[position]) if position < len(seq) else None

    return Mismatch(sample_id, position, token(full), token(ssd), len(full), len(ssd))


@dataclass(frozen=True)
class EvalSummary:
    """What one evaluation epoch measured, for callbacks (figures, sample texts)."""

    stage: str
    scalars: dict[str, float]
    acceptance_by_position: list[float]
    acceptance_by_step: list[float]
    judged_by_position: list[int]
    judged_by_step: list[int]
    samples: list[DecodedSample]
    mismatches: list[Mismatch]


def quality_metric(task: str, meteor: bool = False, **kwargs: Any) -> Metric:
    """VQA accuracy for short-answer tasks, COCO caption scores (no SPICE) for every other task."""
    if task in _ANSWER_TASKS:
        return VQAAccuracy(**kwargs)
    return CaptionScores(meteor=meteor, spice=False, **kwargs)


class DecodingEvaluator(nn.Module):
    """Accumulates, per mode, text quality (by task) and acceptance/speed statistics over an evaluation epoch.

    Args:
        modes: decoders to run, a subset of full, draft, draft_imit, ssd ("full" is needed for speedups).
        meteor: also score METEOR for caption-like tasks (starts a JVM, ~8 s per epoch and mode).
        num_samples: decoded sequences kept per epoch for display (first ones seen on this rank).
        max_draft: draft positions tracked by the acceptance statistics.
        timing_repeats: decodes of each batch by each mode; the run of median time counts (greedy runs repeat the
            same tokens, so only the timing changes).
        warmup: decode the first batch once, untimed, with every mode before timing anything.

    Samples and mismatches are kept per rank: `compute` returns those this rank decoded.
    """

    def __init__(self, modes: Sequence[str], meteor: bool = False, num_samples: int = 4, max_draft: int = 32,
                 timing_repeats: int = 1, warmup: bool = True) -> None:
        super().__init__()
        if timing_repeats < 1:
            raise ValueError(f"timing_repeats must be >= 1, got {timing_repeats}")
        self.timing_repeats = timing_repeats
        self._warm = not warmup
        self.modes = tuple(modes)
        self.meteor = meteor
        self.num_samples = num_samples
        self.stats = nn.ModuleDict({m: AcceptanceStats(max_draft=max_draft) for m in self.modes})
        self.identical = MeanMetric()
        self.quality: dict[str, Metric] = {}  # created at the first batch, when the task is known
        self.samples: list[DecodedSample] = []
        self.mismatches: list[Mismatch] = []

    def update(
        self,
        vlm: SplitVLM,
        decoders: Mapping[str, BatchDecoder],
        batch: Mapping[str, Any],
        decode_text: Callable[[list[list[int]]], list[str]],
        max_new_tokens: int,
    ) -> dict[str, GenerationResult]:
        """Decodes `batch` with every mode and updates the metrics; returns the results by mode."""
        inputs = dict(input_ids=batch["prompt_input_ids"], attention_mask=batch["prompt_attention_mask"],
                      **vision_inputs(batch))
        references = batch["references"]
        if not self._warm:
            for mode in self.modes:
                generate(vlm, decoders[mode], **inputs, max_new_tokens=max_new_tokens)
            self._warm = True
        runs: dict[str, list[GenerationResult]] = {mode: [] for mode in self.modes}
        for _ in range(self.timing_repeats):  # modes in turn, so that a busy CPU slows them alike
            for mode in self.modes:
                runs[mode].append(generate(vlm, decoders[mode], **inputs, max_new_tokens=max_new_tokens))
        results = {}
        for mode in self.modes:
            result = median_run(runs[mode])
            results[mode] = result
            self.stats[mode].update(result)
            self._quality(mode, batch["task"]).update(decode_text(result.tokens), references)
        if "full" in results and "ssd" in results:
            found = [first_mismatch(sid, a, b) for sid, a, b in
                     zip(batch["sample_ids"], results["full"].tokens, results["ssd"].tokens, strict=True)]
            self.identical.update(torch.tensor([m is None for m in found], dtype=torch.float32))
            self.mismatches += [m for m in found if m is not None]
        if "ssd" in results and len(self.samples) < self.num_samples:
            self._keep_samples(batch, results["ssd"])
        return results

    def _quality(self, mode: str, task: str) -> Metric:
        if mode not in self.quality:
            device = self.identical.device
            self.quality[mode] = quality_metric(task, self.meteor).to(device)
        return self.quality[mode]

    def _keep_samples(self, batch: Mapping[str, Any], ssd: GenerationResult) -> None:
        for i, seq in enumerate(ssd.sequences[: self.num_samples - len(self.samples)]):
            self.samples.append(DecodedSample(batch["sample_ids"][i], seq, tuple(batch["references"][i])))

    def compute(self, stage: str) -> EvalSummary:
        """Synchronised scalars plus the acceptance curves of the SSD mode (or the last mode).

        Scalars: ``<mode>/ms_per_token``, ``<mode>/speedup`` (vs full), ``ssd/tau``, ``ssd/alpha``,
        ``ssd/speedup_bound`` (a larger ``ssd/speedup`` is also warned about), the quality
        scores ``<mode>/<name>``, ``num_sequences`` (decoded over all ranks) and ``ssd_identical``.
        """
        scalars: dict[str, float] = {}
        stats = {m: self.stats[m].compute() for m in self.modes}
        for mode, values in stats.items():
            scalars[f"{mode}/ms_per_token"] = 1000.0 * float(values["seconds_per_token"])
            if mode == "ssd":
                scalars[f"{mode}/tau"] = float(values["tau"])
                scalars[f"{mode}/alpha"] = float(values["alpha"])
                scalars[f"{mode}/speedup_bound"] = float(values["speedup_bound"])
            if "full" in stats and mode != "full":
                scalars[f"{mode}/speedup"] = float(stats["full"]["seconds_per_token"] / values["seconds_per_token"])
                if mode == "ssd":
                    check_speedup(scalars[f"{mode}/speedup"], scalars[f"{mode}/speedup_bound"], f"{stage} stage ssd")
            if mode in self.quality:
                scalars.update({f"{mode}/{k}": float(v) for k, v in as_dict(self.quality[mode].compute()).items()})
        scalars["num_sequences"] = float(stats[self.modes[0]]["sequences"])
        if self.identical.update_called:
            scalars["ssd_identical"] = float(self.identical.compute())
        curves = stats.get("ssd", stats[self.modes[-1]])
        return EvalSummary(stage, scalars, curves["acceptance_by_position"].tolist(),
                           curves["acceptance_by_step"].tolist(), curves["judged_by_position"].tolist(),
                           curves["judged_by_step"].tolist(), list(self.samples), list(self.mismatches))

    def reset(self) -> None:
        for metric in [*self.stats.values(), *self.quality.values(), self.identical]:
            metric.reset()
        self.samples = []
        self.mismatches = []


def as_dict(value: torch.Tensor | dict[str, Any]) -> dict[str, Any]:
    """A quality metric's result as named scores (VQA accuracy is a single tensor)."""
    return value if isinstance(value, dict) else {"accuracy": value}
