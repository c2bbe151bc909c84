"""The stream and length benchmarks run the real engine on a tiny preset and report what they measured."""

import json
import math
import re

import pytest

from lightning_ssd.bench.stream import (
    StreamConfig,
    _baseline_name,
    _percentile,
    _ratios,
    format_stream,
    profile_request,
    stream_benchmark,
)
from lightning_ssd.errors import UsageError
from lightning_ssd.tools import bench_stream


def test_percentile_reads_the_ordered_values():
    assert _percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert _percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.95) == 5.0
    assert _percentile([7.0], 0.95) == 7.0


def test_stream_report_counts_every_request_and_ssd_tokens_equal_plain():
    cfg = StreamConfig(backbone="tiny-llava", drafts=["4", "lookup"], num_requests=5, max_rows=[2], rate=200.0,
                       max_new_tokens=6, lengths=[8], repeats=1)
    report = stream_benchmark(cfg, log=lambda s: None)
    rows = {r["method"]: r for r in report["streams"]}
    assert set(rows) == {"plain", "ssd d=4", "prompt lookup d=6"}
    for row in rows.values():
        assert row["tokens_identical"] is True
        assert 5 <= row["generated"] <= 5 * 6
        assert row["p50_latency_s"] <= row["p95_latency_s"] <= row["makespan_s"]
        assert row["p50_ttft_s"] <= row["p50_latency_s"]
        assert row["tokens_per_s"] == row["generated"] / row["makespan_s"]
        # decoding steps alone outrun the whole stream, whose makespan also holds every prefill
        assert row["decode_tokens_per_s"] > (row["generated"] - 5) / row["makespan_s"]
    assert rows["plain"]["mean_accepted_len"] == 1.0
    # SSD's cost model predicts SSD, not prompt lookup
    assert rows["ssd d=4"]["predicted_speedup"] and "cost_per_token" in rows["ssd d=4"]
    assert rows["prompt lookup d=6"]["predicted_speedup"] is None and rows["prompt lookup d=6"]["alpha"] is not None
    assert "fraction_of_predicted" not in rows["prompt lookup d=6"]
    (length,) = report["lengths"]
    assert length["max_new_tokens"] == 8 and length["plain ms/token"] > 0
    table = format_stream(report)
    assert "| 2 | plain |" in table and "1.00x" in table and "| 8 |" in table


def test_a_compiled_method_is_compared_with_compiled_plain_decoding():
    def row(method, rate):
        return dict(method=method, max_rows=1, rate=0.0, tokens_per_s=rate, decode_tokens_per_s=2 * rate,
                    p50_latency_s=1.0, p95_latency_s=1.0, p50_ttft_s=1.0, prefill_share=0.1, tokens_identical=True)

    streams = [row("plain", 100.0), row("ssd d=6", 200.0), row("plain compiled", 200.0), row("ssd d=6 compiled", 300.0)]
    assert _baseline_name("ssd d=6") == "plain"
    assert _baseline_name("ssd d=6 compiled") == "plain compiled"
    by_method = {r["method"]: r for r in streams}
    for r in streams:
        r.update(_ratios([r], [by_method[_baseline_name(r["method"])]]))
    table = format_stream({"streams": streams, "lengths": []})
    assert "| ssd d=6 | 200.0 | 2.00x [2.00-2.00] | 2.00x [2.00-2.00] |" in table
    assert "| ssd d=6 compiled | 300.0 | 1.50x [1.50-1.50] | 1.50x [1.50-1.50] |" in table


def test_a_methods_ratio_is_taken_repeat_by_repeat_against_the_plain_run_beside_it():
    ssd = [{"tokens_per_s": t, "decode_tokens_per_s": 2 * t} for t in (300.0, 150.0, 290.0)]
    plain = [{"tokens_per_s": t, "decode_tokens_per_s": t} for t in (100.0, 75.0, 150.0)]  # repeat 2: a slower spell
    ratios = _ratios(ssd, plain)
    assert ratios["x_plain"] == 2.0  # the ratio of the medians would read 290 / 100 = 2.9
    assert ratios["x_plain_range"] == pytest.approx([290 / 150, 3.0])
    assert ratios["x_plain_decode"] == 4.0 and ratios["x_plain_decode_range"] == pytest.approx([580 / 150, 6.0])
    # a stream whose requests all ended at their prefill decoded nothing: no decoding ratio, and no crash
    idle = [{"tokens_per_s": 50.0, "decode_tokens_per_s": 0.0}]
    assert math.isnan(_ratios(idle, idle)["x_plain_decode"]) and _ratios(idle, idle)["x_plain"] == 1.0


def test_the_fraction_of_predicted_compares_decoding_with_decoding():
    """The cost model predicts the decoding steps' speedup; prefill, which SSD leaves as it is, must not dilute
    the measured side of the comparison."""
    cfg = StreamConfig(backbone="tiny-llava", drafts=["4"], num_requests=4, max_rows=[1], max_new_tokens=6,
                       repeats=1)
    rows = {r["method"]: r for r in stream_benchmark(cfg, log=lambda s: None)["streams"]}
    ssd = rows["ssd d=4"]
    assert ssd["fraction_of_predicted"] == pytest.approx(ssd["x_plain_decode"] / ssd["predicted_speedup"])
    decode = {name: r["decode_tokens_per_s"] for name, r in rows.items()}
    assert ssd["x_plain_decode"] == pytest.approx(decode["ssd d=4"] / decode["plain"])


def test_a_decoded_tokens_time_splits_into_drafting_and_verification_beside_the_cost_models_split():
    cfg = StreamConfig(backbone="tiny-llava", drafts=["4"], num_requests=4, max_rows=[2], max_new_tokens=6,
                       repeats=1)
    report = stream_benchmark(cfg, log=lambda s: None)
    rows = {r["method"]: r for r in report["streams"]}
    assert "cost_per_token" not in rows["plain"]
    ssd, cost = rows["ssd d=4"], report["cost_model"]
    split = ssd["cost_per_token"]
    # measured: the parts add up to the decoding steps' time relative to plain decoding's
    assert split["draft"] > 0 and split["verify"] > 0
    assert split["draft"] + split["verify"] == pytest.approx(1 / ssd["x_plain_decode"])
    # the model: one deep pass per cycle, shared by the tokens the cycle emitted
    plain_price = cost["L"] + cost["H"]
    assert split["verify_model"] == pytest.approx((cost["L"] - cost["n"] + cost["H"]) / plain_price
                                                  / ssd["mean_accepted_len"])
    per_cycle = split["draft_model"] * plain_price * ssd["mean_accepted_len"]  # the model's drafting per cycle
    assert cost["n"] <= per_cycle <= 5 * cost["n"] + 4 * (cost["A"] + cost["H"])  # 0 to 4 drafts
    table = format_stream(report)
    assert "| draft | draft, model | verify | verify, model |" in table
    assert f"| 2 | ssd d=4 | {split['draft']:.3f} | {split['draft_model']:.3f} |" in table


def test_cli_writes_the_json_and_refuses_an_impossible_load(tmp_path):
    out = tmp_path / "stream.json"
    bench_stream.main(["--backbone", "tiny-llava", "--num-requests", "2", "--max-rows", "1", "--max-new-tokens",
                       "3", "--num-repeats", "1", "--output", str(out)])
    assert json.loads(out.read_text())["streams"][0]["max_rows"] == 1
    with pytest.raises(UsageError, match=re.escape("--load 1.5: must be in (0, 1]")):
        bench_stream.main(["--load", "1.5", "--output", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_profile_splits_a_requests_time_per_token_into_groups():
    from lightning_ssd.decoding.continuous import ContinuousEngine, Request
    from tests.helpers import make_inputs, tiny_vlm

    vlm = tiny_vlm("tiny-llava")
    inputs = make_inputs("tiny-llava", [4])
    request = Request({"pixel_values": inputs["pixel_values"], "input_ids": inputs["input_ids"]}, 8, ignore_eos=True)
    groups = profile_request(lambda: ContinuousEngine(vlm, None, max_rows=1, max_slots=64), request)
    assert set(groups) == {"linear (weights)", "attention", "cache writes and reads", "other ops",
                           "outside torch ops"}
    assert all(v >= 0 for v in groups.values())
    assert groups["linear (weights)"] > 0 and groups["attention"] > 0
