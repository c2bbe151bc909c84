"""Where an SSD sequence first departs from the full model's, as the evaluator records it; how it times."""

import pytest
import torch

import lightning_ssd.models.evaluation as evaluation
from lightning_ssd.models.evaluation import DecodingEvaluator, Mismatch, first_mismatch
from lightning_ssd.timing import ImplausibleSpeedupWarning
from tests.helpers import fabricated_result


def test_equal_sequences_have_no_mismatch():
    assert first_mismatch("a", [5, 6, 2], (5, 6, 2)) is None


def test_the_first_differing_token_and_both_tokens_there():
    assert first_mismatch(7, [5, 6, 8, 2], [5, 9, 8, 2]) == Mismatch(7, 1, 6, 9, 4, 4)


def test_a_sequence_that_ends_early_differs_where_it_ends():
    assert first_mismatch("b", [5, 6, 2], [5, 6, 2, 4]) == Mismatch("b", 3, None, 4, 3, 4)
    assert first_mismatch("c", [5, 6], [5]) == Mismatch("c", 1, 6, None, 2, 1)


def _evaluate(monkeypatch, full_times: list[float], ssd_seconds: float, repeats: int):
    """The real evaluator on two one-row batches whose decoders return hand-made results: the full model takes
    `full_times` in turn (the warm-up first), SSD (tau 1.6) `ssd_seconds` each time."""
    calls, full = [], iter(full_times)

    def generate(vlm, mode, **inputs):
        calls.append(mode)
        if mode == "full":
            return fabricated_result([[1] * 8], next(full), drafts=0)
        return fabricated_result([[2, 1, 2, 1, 2]], ssd_seconds)

    monkeypatch.setattr(evaluation, "generate", generate)
    evaluator = DecodingEvaluator(["full", "ssd"], timing_repeats=repeats)
    batch = {"prompt_input_ids": torch.ones(1, 3, dtype=torch.long), "prompt_attention_mask": torch.ones(1, 3),
             "references": [["yes"]], "task": "vqa", "sample_ids": [0]}
    for _ in range(2):
        evaluator.update(None, {"full": "full", "ssd": "ssd"}, batch, lambda t: ["yes"] * len(t), 8)
    return evaluator.compute("test").scalars, calls


def test_the_first_batch_warms_up_and_each_batch_keeps_its_median_run(monkeypatch, recwarn):
    # warm-up 100 s, then batch 1: 1, 50, 1 s and batch 2: 1, 1, 1 s; the medians count: 2 s against 1.6 s of SSD
    scalars, calls = _evaluate(monkeypatch, [100.0, 1.0, 50.0, 1.0, 1.0, 1.0, 1.0], ssd_seconds=0.8, repeats=3)
    assert calls == ["full", "ssd"] * 7
    assert scalars["ssd/speedup"] == pytest.approx(1.25) and scalars["ssd/tau"] == pytest.approx(1.6)
    assert scalars["ssd/speedup_bound"] == pytest.approx(1.6)
    assert not [w for w in recwarn if w.category is ImplausibleSpeedupWarning]


def test_an_impossible_test_stage_speedup_is_warned_about(monkeypatch):
    with pytest.warns(ImplausibleSpeedupWarning, match="test stage ssd: a measured speedup of 107.70x"):
        scalars, _ = _evaluate(monkeypatch, [1.0, 107.7, 107.7], ssd_seconds=1.0, repeats=1)
    assert scalars["ssd/speedup"] == pytest.approx(107.7) and scalars["ssd/speedup_bound"] == pytest.approx(1.6)
