"""AcceptanceStats against the engine's own GenerationResult statistics, on hand-made cycles."""

import math

import pytest
import torch

from lightning_ssd.decoding.result import Cycle, GenerationResult, SequenceResult
from lightning_ssd.metrics.acceptance import AcceptanceStats


def _seq(cycles, prefill=0.1, decode=0.4):
    tokens = tuple(range(1 + sum(c.emitted for c in cycles)))
    return SequenceResult(tokens, tuple(cycles), prefill, decode)


def _cycle(drafted, accepted, emitted=None):
    return Cycle(drafted, accepted, accepted + 1 if emitted is None else emitted, 1, 0.0, 0.0)


RESULT = GenerationResult((
    _seq([_cycle(4, 4), _cycle(4, 1), _cycle(4, 0)]),  # all accepted (+ bonus), one, none
    _seq([_cycle(3, 2), _cycle(2, 2, emitted=1)], prefill=0.2, decode=0.3),  # the last cycle cut by EOS
))


def test_matches_generation_result():
    metric = AcceptanceStats(max_draft=8, max_steps=32)
    metric.update(RESULT)
    out = metric.compute()
    assert out["tau"].item() == pytest.approx(RESULT.mean_accepted_length)
    assert out["alpha"].item() == pytest.approx(RESULT.acceptance_rate)
    expected = RESULT.acceptance_by_position + [float("nan")] * (8 - len(RESULT.acceptance_by_position))
    for got, want in zip(out["acceptance_by_position"].tolist(), expected, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    assert out["seconds_per_token"].item() == pytest.approx((0.5 + 0.5) / RESULT.num_tokens)
    assert out["sequences"].item() == 2


def test_acceptance_by_output_step():
    metric = AcceptanceStats(max_draft=8, max_steps=16)
    metric.update(GenerationResult((_seq([_cycle(4, 4), _cycle(4, 1)]),)))
    by_step = metric.compute()["acceptance_by_step"].tolist()
    # cycle 1 drafts steps 1-4 (all accepted), emits 5 tokens; cycle 2 drafts from step 6: step 6 ok, step 7 rejected
    assert math.isnan(by_step[0])
    assert by_step[1:5] == [1.0, 1.0, 1.0, 1.0]
    assert math.isnan(by_step[5])
    assert by_step[6:8] == [1.0, 0.0]
    assert all(math.isnan(v) for v in by_step[8:])


def test_sums_over_updates_and_reset():
    metric = AcceptanceStats()
    metric.update(RESULT)
    metric.update(RESULT)
    assert metric.compute()["tau"].item() == pytest.approx(RESULT.mean_accepted_length)
    assert int(metric.cycles) == 2 * len(RESULT.cycles)
    metric.reset()
    assert int(metric.cycles) == 0 and torch.isnan(metric.compute()["tau"])


def test_tau_counts_verified_cycles_that_drafted_nothing():
    result = GenerationResult((_seq([Cycle(4, 2, 3, 1, 0.0, 0.0), Cycle(0, 0, 1, 1, 0.0, 0.0)]),))
    metric = AcceptanceStats()
    metric.update(result)
    assert metric.compute()["tau"].item() == pytest.approx(result.mean_accepted_length) == 2.0


def test_greedy_results_give_time_but_no_acceptance():
    greedy = GenerationResult((_seq([Cycle(0, 0, 1, 1, 0.0, 0.01)] * 3),))
    metric = AcceptanceStats()
    metric.update(greedy)
    out = metric.compute()
    assert torch.isnan(out["tau"]) and torch.isnan(out["alpha"])
    assert out["seconds_per_token"].item() == pytest.approx(0.5 / 4)
