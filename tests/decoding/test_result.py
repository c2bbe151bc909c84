import math

import torch

from lightning_ssd.decoding.result import Cycle, GenerationResult, SequenceResult


def _result(cycles, tokens=(1, 2, 3)):
    return GenerationResult((SequenceResult(tuple(tokens), tuple(cycles), 0.0, 0.0),))


def test_acceptance_statistics_by_hand():
    # d=4 cycles: accepted 4 (bonus), 1 (correction), 0; and a truncated d=2 cycle fully accepted
    cycles = [Cycle(4, 4, 5, 1, 0, 0), Cycle(4, 1, 2, 1, 0, 0), Cycle(4, 0, 1, 1, 0, 0), Cycle(2, 2, 2, 1, 0, 0)]
    r = _result(cycles)
    assert r.mean_accepted_length == (5 + 2 + 1 + 2) / 4
    # judged positions: 4 + 2 + 1 + 2 = 9, accepted 4 + 1 + 0 + 2 = 7
    assert r.acceptance_rate == 7 / 9
    # position 0 reached 4x accepted 3x; position 1 reached 3x accepted 2x; 2: 1/1; 3: 1/1
    assert r.acceptance_by_position == [3 / 4, 2 / 3, 1.0, 1.0]
    assert r.deep_passes == 4 and r.drafted == 14


def test_cycles_that_drafted_nothing_count_in_tau_but_not_in_alpha():
    # a confidence threshold stopped the second cycle before its first draft: one token from one deep pass
    r = _result([Cycle(4, 2, 3, 1, 0, 0), Cycle(0, 0, 1, 1, 0, 0)])
    assert r.mean_accepted_length == (3 + 1) / 2
    assert r.acceptance_rate == 2 / 3


def test_plain_decoding_has_no_acceptance():
    r = _result([Cycle(0, 0, 1, 1, 0, 0)] * 2)
    assert math.isnan(r.mean_accepted_length) and math.isnan(r.acceptance_rate)
    assert r.acceptance_by_position == []


def test_padded_like_generate():
    r = GenerationResult((SequenceResult((4, 2), (), 0, 0), SequenceResult((5, 6, 7), (), 0, 0)))
    assert torch.equal(r.padded(0), torch.tensor([[4, 2, 0], [5, 6, 7]]))
