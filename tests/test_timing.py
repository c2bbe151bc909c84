"""The speedup bound that the measured acceptance puts on a timing, its check, and the median run."""

import math
import warnings

import pytest

from lightning_ssd.metrics.acceptance import AcceptanceStats
from lightning_ssd.timing import ImplausibleSpeedupWarning, check_speedup, median_run, speedup_bound
from tests.helpers import fabricated_result


def test_one_row_batches_are_bounded_by_tau():
    results = [fabricated_result([[2, 1, 2, 1]], 1.0), fabricated_result([[4, 4]], 1.0)]
    assert speedup_bound(results) == pytest.approx((6 + 8) / (4 + 2))  # emitted tokens / cycles = tau


def test_a_batch_is_bounded_by_its_slowest_row():
    # row 0: 12 tokens in 3 cycles (tau 4); row 1: 2 tokens in 2 cycles. tau = 14 / 5 = 2.8, but plain decoding
    # of the batch takes 12 steps and SSD 3 cycles: 4x is possible where a step costs the same for 1 or 2 rows
    result = fabricated_result([[4, 4, 4], [1, 1]], 1.0)
    assert speedup_bound([result]) == pytest.approx(4.0)


def test_plain_decoding_has_no_bound():
    assert math.isnan(speedup_bound([])) and math.isnan(speedup_bound([fabricated_result([[]], 1.0)]))


def test_acceptance_stats_report_the_same_bound():
    results = [fabricated_result([[4, 4, 4], [1, 1]], 1.0), fabricated_result([[2, 1, 2]], 1.0)]
    stats = AcceptanceStats()
    for result in results:
        stats.update(result)
    assert stats.compute()["speedup_bound"].item() == pytest.approx(speedup_bound(results))
    assert math.isnan(AcceptanceStats().compute()["speedup_bound"].item())


def test_an_impossible_speedup_is_flagged():
    # the d-sweep figure of the issue: a greedy baseline timed once, cold, beside another job
    with pytest.warns(ImplausibleSpeedupWarning, match="107.70x exceeds the 1.50x"):
        message = check_speedup(107.7, 1.5, "fit sweep, d = 4")
    assert message.startswith("fit sweep, d = 4: ") and "--threads 1" in message


@pytest.mark.parametrize(("speedup", "bound"), [(2.37, 4.37), (1.75, 1.5), (0.8, 1.0), (float("nan"), 2.0),
                                                (3.0, float("nan"))])
def test_a_plausible_or_undefined_speedup_passes(speedup, bound):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_speedup(speedup, bound, "x") is None  # 1.75 at 1.5: within the 20% slack


def test_median_run_is_the_run_of_median_time():
    runs = [fabricated_result([[1]], t) for t in (3.0, 1.0, 9.0, 2.0)]
    assert median_run(runs) is runs[3]  # times 1, 2, 3, 9: the lower middle one
    assert median_run(runs[:3]) is runs[0]
