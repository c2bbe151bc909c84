"""Per-row draft lengths and prompt lookup, on hand-made inputs."""

from dataclasses import replace

import pytest

from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.decoding.draft_policy import (
    AdaptiveDraft,
    CycleReport,
    RowAcceptance,
    ScheduledDraft,
    draft_policy,
)
from lightning_ssd.decoding.prompt_lookup import lookup
from lightning_ssd.decoding.schedule import FixedDraftLength

COST = CostModel(L=24, n=3, A=0.3, H=0.5)


def test_adaptive_d_grows_with_acceptance_and_is_zero_when_no_draft_pays():
    ds = [AdaptiveDraft(COST, max_d=12).best([a]) for a in (0.0, 0.3, 0.6, 0.8, 0.9, 0.97, 1.0)]
    assert ds[0] == 0  # nothing accepted: plain decoding is faster than any draft
    assert ds == sorted(ds) and ds[-1] == 12  # alpha = 1: the longest draft
    for alpha, d in zip((0.6, 0.9), (ds[2], ds[4]), strict=True):  # the pick is the cost model's argmax
        best = max(range(1, 13), key=lambda k: COST.predicted_speedup(alpha, [k]))
        assert d == best


def test_a_batch_drafts_one_d_from_every_rows_acceptance_within_each_rows_room():
    policy = AdaptiveDraft(COST, max_d=12)
    good, poor = RowAcceptance(accepted=9.0, judged=10.0), RowAcceptance(accepted=0.0, judged=10.0)
    pooled = good.alpha(policy.prior, policy.strength)  # a row alone is its own pool
    assert policy.choose([good], [12])[0] == policy.best([good.alpha(pooled, policy.strength)], rows=1) > 0
    both = policy.choose([good, poor, good], [12, 12, 2])
    assert both[0] == both[1] > 0 and both[2] == 2  # the poor row drafts the batch's d: it costs nothing more
    assert policy.best([0.05] * 3) == 0  # rows that accept nothing: plain decoding through the split


def test_measured_timings_price_the_cycle_at_the_nearest_number_of_rows():
    policy = AdaptiveDraft(COST, max_d=12)
    alpha = [0.9]
    flops = policy.best(alpha, rows=1)
    policy.observe(CycleReport(rows=1, steps=3, draft_s=0.004, rest_s=0.100))  # drafting is cheap: draft long
    assert policy.best(alpha, rows=1) > flops and policy.best(alpha, rows=4) == policy.best(alpha, rows=1)
    policy.observe(CycleReport(rows=8, steps=3, draft_s=0.400, rest_s=0.001))  # drafting is dear: draft short
    assert policy.best(alpha, rows=8) < flops
    assert policy.best(alpha, rows=6) == policy.best(alpha, rows=8)  # 6 is nearer 8 than 1
    unmeasured = AdaptiveDraft(COST, max_d=12, measured=False)
    unmeasured.observe(CycleReport(rows=1, steps=3, draft_s=0.004, rest_s=0.100))
    assert unmeasured.best(alpha, rows=1) == flops


def test_a_sampled_rows_d_ignores_its_companions_and_the_timings():
    policy = AdaptiveDraft(COST, max_d=12)
    sampled = RowAcceptance(accepted=5.0, judged=10.0, sampled=True)
    alone = policy.choose([sampled], [12])[0]
    policy.observe(CycleReport(rows=2, steps=3, draft_s=0.004, rest_s=0.100))
    with_good = policy.choose([sampled, RowAcceptance(accepted=10.0, judged=10.0)], [12, 12])
    assert with_good[0] == alone and with_good[1] != alone


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
    assert draft_policy(3).choose([RowAcceptance()], [5]) == [3] and draft_policy(3).max_d == 3
    assert draft_policy("dynamic").max_d == 15
    assert isinstance(draft_policy("adaptive", COST), AdaptiveDraft)
    assert draft_policy(ScheduledDraft(FixedDraftLength(2))).choose([RowAcceptance()] * 2, [5, 1]) == [2, 1]
    custom = _Recorder()
    assert draft_policy(custom) is custom  # any object with choose, observe and max_d
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


def test_the_fitted_price_counts_verification_widening_with_the_draft():
    policy = AdaptiveDraft(COST, max_d=12)
    for steps in (1, 6, 3, 8, 2, 5, 7, 4):  # drafting 1 ms per token; verification 10 ms + 4 ms per token
        k = steps + 1
        policy.observe(CycleReport(rows=8, steps=steps, draft_s=0.001 * k, rest_s=0.010 + 0.004 * k))
    per_token, fixed = policy.prices(8)
    assert per_token == pytest.approx(0.005) and fixed == pytest.approx(0.010)
    drafting_only = AdaptiveDraft(COST, max_d=12)
    drafting_only.observe(CycleReport(rows=8, steps=4, draft_s=0.005, rest_s=0.030))
    assert drafting_only.prices(8) == pytest.approx((0.001, 0.030))  # k never varied: drafting's price alone
    assert policy.best([0.9] * 8, rows=8) < drafting_only.best([0.9] * 8, rows=8)


def test_a_new_greedy_row_starts_from_its_companions_acceptance():
    policy = AdaptiveDraft(COST, max_d=12, prior=0.3)
    seasoned = RowAcceptance(accepted=45.0, judged=50.0)  # 0.9
    new = RowAcceptance()
    assert policy.choose([new], [12]) == [policy.best([0.3])]  # alone: the prior
    pooled = (45.0 + 0.3 * 2) / (50.0 + 2)
    alpha_new = (0.0 + pooled * 2) / (0.0 + 2)
    alpha_old = (45.0 + pooled * 2) / (50.0 + 2)
    assert policy.choose([seasoned, new], [12, 12])[1] == policy.best([alpha_old, alpha_new], rows=2)
    assert policy.best([alpha_old, alpha_new], rows=2) > policy.best([0.9, 0.3], rows=2)


def test_acceptance_that_falls_with_the_draft_position_shortens_the_batchs_draft():
    decaying, flat = AdaptiveDraft(COST, max_d=12), AdaptiveDraft(COST, max_d=12)
    for policy in (decaying, flat):  # cheap drafts: length is limited by acceptance alone
        policy.observe(CycleReport(rows=4, steps=3, draft_s=0.004, rest_s=0.100))
    # decaying: the first 3 drafts always accepted, the 4th never; flat: as many accepted overall, at every position
    decaying.observe(CycleReport(4, 8, 0.01, 0.1, drafted=(8,) * 4, accepted=(3,) * 4, sampled=(False,) * 4))
    rows = [RowAcceptance(accepted=3.0, judged=4.0) for _ in range(4)]
    short, long = decaying.choose(rows, [12] * 4), flat.choose(rows, [12] * 4)
    assert short[0] < long[0] and short[0] >= 3
    sampled = CycleReport(4, 8, 0.01, 0.1, drafted=(8,) * 4, accepted=(0,) * 4, sampled=(True,) * 4)
    flat.observe(sampled)  # sampled rows' drafts do not count: their acceptance is a coin, not the draft's match
    assert flat.choose(rows, [12] * 4) == long


def test_a_row_near_the_usual_end_of_an_output_drafts_shorter():
    policy = AdaptiveDraft(COST, max_d=8)
    policy.observe(CycleReport(rows=1, steps=3, draft_s=0.080, rest_s=0.050))  # a draft costs 20 ms
    row = RowAcceptance(accepted=9.5, judged=10.0, generated=2)
    fresh = policy.choose([row], [30])[0]
    policy.observe(CycleReport(rows=1, steps=3, draft_s=0.080, rest_s=0.050, ended=(12,) * 20))  # outputs end at 12
    assert policy.choose([row], [30]) == [fresh] == [8]  # 10 tokens to go: as long a draft as before
    row.generated = 10
    assert policy.choose([row], [30])[0] < fresh  # 2 to go: a long draft would be paid for and never used
    row.generated = 13
    assert policy.choose([row], [30]) == [fresh]  # past every ended output: nothing known, it goes on


class _Recorder:
    """A draft policy of one's own: d = 2 for every row, and every report kept."""

    max_d = 2

    def __init__(self) -> None:
        self.reports = []

    def choose(self, rows, room):
        return [min(2, r) for r in room]

    def observe(self, report):
        self.reports.append(report)


def test_the_fixed_price_of_prefill_passes_between_cycles_lengthens_the_draft():
    cycles = [CycleReport(rows=8, steps=s, draft_s=0.001 * (s + 1), rest_s=0.010 + 0.002 * (s + 1))
              for s in (3, 6, 4, 5)]
    alone, admitting = AdaptiveDraft(COST, max_d=12), AdaptiveDraft(COST, max_d=12)
    for report in cycles:
        alone.observe(report)
    for report, admitted in zip(cycles, (1, 3, 2, 4), strict=True):  # a pass: 20 ms, and 3 ms per request
        admitting.observe(replace(report, admissions=((admitted, 0.020 + 0.003 * admitted),)))
    assert admitting.admission_overhead() == pytest.approx(0.020)
    assert admitting.prices(8) == pytest.approx((0.003, 0.010 + 0.020))  # one pass after every cycle
    assert admitting.prices(1) == admitting.prices(8)  # the nearest number of rows timed
    rows = [RowAcceptance(accepted=8.0, judged=10.0) for _ in range(8)]
    assert admitting.choose(rows, [12] * 8)[0] > alone.choose(rows, [12] * 8)[0]
    one_row = AdaptiveDraft(COST, max_d=12)  # every pass admits one request: its price cannot be split
    for report in cycles:
        one_row.observe(replace(report, rows=1, admissions=((1, 0.030),)))
    assert one_row.admission_overhead() == 0.0 and one_row.prices(1) == alone.prices(8)
