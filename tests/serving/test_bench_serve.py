"""bench-serve's table and memory reading, without starting servers (the server tests start them through it)."""

import os

from lightning_ssd.bench.serve_load import format_serve, group_memory_mb


def _run(concurrency, tokens_per_s):
    return {"concurrency": concurrency, "tokens_per_s": tokens_per_s, "p50_latency_s": 1.0, "p95_latency_s": 2.0,
            "p50_ttft_s": 0.1, "p95_ttft_s": 0.2, "failed": 0, "memory_mb_after": 110.0}


def test_the_table_gives_each_ssd_run_its_ratio_to_the_greedy_run_at_the_same_place():
    report = {"servers": [
        {"mode": "ssd", "ready_s": 5.0, "memory_mb_before": 100.0, "runs": [_run(1, 30.0), _run(4, 80.0)],
         "metrics": {"ssd_tau": 3.0, "ssd_alpha": 0.8, "ssd_generated_tokens_total": 640}},
        {"mode": "greedy", "ready_s": 4.0, "memory_mb_before": 100.0, "runs": [_run(1, 15.0), _run(4, 50.0)],
         "metrics": {}}]}
    table = format_serve(report)
    assert "| ssd | 1 | 30.0 | 2.00x |" in table and "| ssd | 4 | 80.0 | 1.60x |" in table
    assert "| greedy | 4 | 50.0 | 1.00x |" in table and "100 -> 110" in table
    assert "tau 3.00, alpha 0.800" in table and "ssd 5.0 s, greedy 4.0 s" in table


def test_memory_sums_the_process_group():
    assert group_memory_mb(os.getpgid(0)) > 10
