"""Per-row draft lengths and prompt lookup, on hand-made inputs."""

import pytest

from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.decoding.draft_policy import AdaptiveDraft, RowAcceptance, ScheduledDraft, draft_policy
from lightning_ssd.decoding.prompt_lookup import lookup
from lightning_ssd.decoding.schedule import FixedDraftLength

COST = CostModel(L=24, n=3, A=0.3, H=0.5)


def test_adaptive_d_grows_with_acceptance_and_is_zero_when_no_draft_pays():
    ds = [AdaptiveDraft(COST, max_d=12).best(a) for a in (0.0, 0.3, 0.6, 0.8, 0.9, 0.97, 1.0)]
    assert ds[0] == 0  # nothing accepted: plain decoding is faster than any draft
    assert ds == sorted(ds) and ds[-1] == 12  # alpha = 1: the longest draft
    for alpha, d in zip((0.6, 0.9), (ds[2], ds[4]), strict=True):  # the pick is the cost model's argmax
        best = max(range(1, 13), key=lambda k: COST.predicted_speedup(alpha, [k]))
        assert d == best


def test_row_acceptance_counts_judged_drafts_and_decays():
    row = RowAcceptance()
    row.record(drafted=4, accepted=4, emitted=5)  # all accepted: 4 judged
    row.record(drafted=4, accepted=1, emitted=2)  # 1 accepted, then a rejection: 2 judged
    assert row.generated == 7
    assert row.accepted == pytest.approx(0.9 * 4 + 1)
    assert row.judged == pytest.approx(0.9 * 4 + 2)
    assert row.alpha(prior=0.5, strength=2) == pytest.approx((4.6 + 1) / (5.6 + 2))
    row.record(drafted=0, accepted=0, emitted=1)  # a plain step judges nothing
    assert row.judged == pytest.approx(5.6) and row.generated == 8


def test_draft_policy_parses_settings():
    assert draft_policy(3)(RowAcceptance()) == 3 and draft_policy(3).max_d == 3
    assert draft_policy("dynamic").max_d == 15
    assert isinstance(draft_policy("adaptive", COST), AdaptiveDraft)
    assert draft_policy(ScheduledDraft(FixedDraftLength(2)))(RowAcceptance()) == 2
    with pytest.raises(ValueError, match="give the cost model"):
        draft_policy("adaptive")
    with pytest.raises(ValueError, match="'adaptive', got 'fast'"):
        draft_policy("fast")


def test_lookup_copies_what_followed_the_latest_longest_match():
    history = [5, 6, 7, 9, 5, 6, 8, 1, 5, 6]
    assert lookup(history, 3) == [8, 1, 5]  # (5, 6) last occurred at 4, followed by 8, 1, 5
    assert lookup(history, 3, max_ngram=1) == [8, 1, 5]  # 6 last occurred at 5
    assert lookup([1, 2, 3, 4], 3) == []  # 4 never occurred before
    assert lookup(history, 0) == []
    assert lookup([7, 8, 7, 8, 7], 4, max_ngram=3) == [8, 7]  # (7, 8, 7) occurred at 0, followed by 8, 7
