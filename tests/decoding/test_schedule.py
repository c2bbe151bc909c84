import math

import pytest

from lightning_ssd.decoding.schedule import DynamicDraftLength, FixedDraftLength, draft_length


def test_dynamic_draft_length_follows_eq5():
    sched = DynamicDraftLength(d0=5, span=10, slope=0.01, horizon=512)
    for t in (0, 100, 256, 400, 2000):
        assert sched(t) == 5 + math.floor(10 / (1 + math.exp(-0.01 * (t - 256))))
    assert sched(0) == 5 + 0 and sched(256) == 10 and sched(5000) == 15
    assert all(sched(t) <= sched(t + 1) for t in range(1000))  # grows with context


def test_parse_and_validate():
    assert draft_length(4) == FixedDraftLength(4)
    assert draft_length("6") == FixedDraftLength(6)
    assert isinstance(draft_length("dynamic"), DynamicDraftLength)
    for bad in (0, -1, "0"):
        with pytest.raises(ValueError, match="d must be >= 1"):
            draft_length(bad)
    with pytest.raises(ValueError, match="'dynamic'"):
        draft_length("fast")
    with pytest.raises(ValueError, match="d0 >= 1"):
        DynamicDraftLength(d0=0)
