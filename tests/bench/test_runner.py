import json

import pytest

from lightning_ssd.bench.runner import BenchConfig, format_table, run_benchmark
from lightning_ssd.tools.bench import main as bench_main


@pytest.fixture(scope="module")
def report():
    cfg = BenchConfig(backbone="tiny-blip2-opt", n=1, drafts=["3", "dynamic"], redundant_deep_layers=True,
                      num_samples=2, max_new_tokens=8, repeats=2, warmup=0)
    return run_benchmark(cfg, log=lambda s: None)


def test_every_method_is_reported_with_its_fields(report):
    names = [r["method"] for r in report["methods"]]
    assert names == ["transformers_greedy", "greedy", "ssd_d3", "ssd_dynamic", "draft_only", "draft_only_imitation"]
    for rec in report["methods"]:
        for key in ("tokens_identical", "speedup_decode", "speedup_e2e", "tokens_per_s", "peak_rss_mb"):
            assert key in rec
        assert rec["peak_rss_mb"] > 50


def test_redundant_backbone_is_lossless_with_full_acceptance(report):
    by_name = {r["method"]: r for r in report["methods"]}
    for name in ("greedy", "ssd_d3", "ssd_dynamic", "draft_only"):
        assert by_name[name]["tokens_identical"], name
    for name in ("ssd_d3", "ssd_dynamic"):
        rec = by_name[name]
        assert rec["acceptance_rate"] == 1.0
        assert rec["acceptance_by_position"][0] == 1.0
        assert rec["predicted_speedup"] <= rec["ceiling_speedup"] + 1e-9
        assert rec["mean_accepted_len"] > 1


def test_speedups_are_against_the_faster_baseline(report):
    base = report["baseline"]
    assert base["decode_method"] in ("transformers_greedy", "greedy")
    by_name = {r["method"]: r for r in report["methods"]}
    assert by_name[base["decode_method"]]["speedup_decode"] == pytest.approx(1.0)
    assert max(by_name["transformers_greedy"]["speedup_decode"], by_name["greedy"]["speedup_decode"]) == (
        pytest.approx(1.0)
    )
    assert "ceiling" in format_table(report)


def test_command_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    bench_main(["--backbone", "tiny-llava", "--num-samples", "1", "--max-new-tokens", "4", "--repeats", "1",
                "--warmup", "0", "--draft", "2", "--imitation", "none", "--output", str(out)])
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["methods"]] == ["transformers_greedy", "greedy", "ssd_d2", "draft_only"]
    assert "speedup_decode" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--draft", "0"], ["--draft", "x"], ["--n", "9"]])
def test_command_rejects_impossible_settings(bad, tmp_path):
    with pytest.raises((SystemExit, ValueError), match="d >= 1|n must be in"):
        bench_main(["--backbone", "tiny-llava", "--output", str(tmp_path / "r.json"), *bad])
    assert not (tmp_path / "r.json").exists()
