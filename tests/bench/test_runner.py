import json
from dataclasses import asdict, replace

import pytest

from lightning_ssd.backbones import load_backbone
from lightning_ssd.bench.runner import BenchConfig, MethodRecord, _flag, bench_spec, format_table, run_benchmark
from lightning_ssd.models.checkpoint import save_draft
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.timing import FLAG, ImplausibleSpeedupWarning
from lightning_ssd.tools.bench import main as bench_main

NAMES = ["transformers_greedy", "greedy", "ssd_d3", "ssd_dynamic", "draft_only", "draft_only_imitation"]


@pytest.fixture(scope="module")
def report():
    cfg = BenchConfig(backbone="tiny-blip2-opt", n=1, drafts=["3", "dynamic"], redundant_deep_layers=True,
                      num_samples=3, batch_sizes=[1, 2], max_new_tokens=8, repeats=2, warmup=0)
    return run_benchmark(cfg, log=lambda s: None)


def test_every_method_is_reported_at_every_batch_size(report):
    assert [(r["batch_size"], r["method"]) for r in report["methods"]] == [(b, m) for b in (1, 2) for m in NAMES]
    assert list(report["baselines"]) == ["1", "2"] and report["baseline"] == report["baselines"]["1"]
    for rec in report["methods"]:
        assert rec["peak_rss_mb"] > 50
        assert rec["num_tokens"] == 3 * 8  # three samples of max_new_tokens each (the tiny model emits no EOS here)
        assert rec["tokens_per_s"] == pytest.approx((rec["num_tokens"] - 3) / rec["decode_s"])


def test_redundant_backbone_is_lossless_with_full_acceptance(report):
    for rec in report["methods"]:
        if rec["method"] != "transformers_greedy":
            assert rec["tokens_identical"] is True, rec["method"]
        if rec["d"] is not None:
            assert rec["acceptance_rate"] == 1.0
            assert rec["acceptance_by_position"][0] == 1.0
            assert rec["predicted_speedup"] <= rec["ceiling_speedup"] + 1e-9
    d3 = [r for r in report["methods"] if r["method"] == "ssd_d3"]
    # 8 tokens: the prefill's, then a cycle of 3 drafts + bonus, then one of 2 drafts + bonus (the budget): tau 3.5
    assert [r["mean_accepted_len"] for r in d3] == [3.5, 3.5]
    assert [r["deep_passes"] for r in d3] == [6, 6]


def test_speedups_are_against_the_faster_baseline_of_the_same_batch_size(report):
    for size, base in report["baselines"].items():
        assert base["decode_method"] in ("transformers_greedy", "greedy")
        rows = {r["method"]: r for r in report["methods"] if r["batch_size"] == int(size)}
        assert rows[base["decode_method"]]["speedup_decode"] == pytest.approx(1.0)
        for r in rows.values():
            assert r["speedup_decode"] == pytest.approx(base["decode_s"] / r["decode_s"])
    assert "batch 2 baseline" in format_table(report)


def test_speculative_methods_carry_the_bound_of_their_tau_and_plausible_ones_pass(report):
    for rec in report["methods"]:
        if rec["d"] is None:
            assert rec["speedup_bound"] is None and rec["speedup_flag"] is None
        elif rec["method"] == "ssd_d3":
            assert rec["speedup_bound"] == pytest.approx(3.5)  # every row as long as the others: tau


def test_a_speedup_its_tau_cannot_give_is_flagged_in_the_record_and_the_table(report):
    records = [MethodRecord(**r) for r in report["methods"] if r["batch_size"] == 1]
    plausible = [replace(r) for r in records]
    _flag(plausible, report["baseline"])
    assert all(r.speedup_flag is None for r in plausible)
    ssd = next(r for r in records if r.method == "ssd_d3")
    ssd.decode_s, ssd.speedup_decode = ssd.decode_s / 100, ssd.speedup_decode * 100  # a fabricated timing
    with pytest.warns(ImplausibleSpeedupWarning, match="bench ssd_d3 at batch 1"):
        _flag(records, report["baseline"])
    assert ssd.speedup_flag is not None and [r.method for r in records if r.speedup_flag] == ["ssd_d3"]
    table = format_table({**report, "methods": [asdict(r) for r in records]})
    row = next(line for line in table.splitlines() if "| ssd_d3 |" in line)
    assert f"{ssd.speedup_decode:.3f} {FLAG} |" in row and f"{FLAG} bench ssd_d3 at batch 1: " in table


def test_command_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    bench_main(["--backbone", "tiny-llava", "--num-samples", "1", "--max-new-tokens", "4", "--repeats", "1",
                "--warmup", "0", "--draft", "2", "--imitation", "none", "--output", str(out)])
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["methods"]] == ["transformers_greedy", "greedy", "ssd_d2", "draft_only"]
    assert "speedup_decode" in capsys.readouterr().out


def test_command_samples(tmp_path):
    out = tmp_path / "r.json"
    bench_main(["--backbone", "tiny-llava", "--num-samples", "2", "--batch-size", "2", "--max-new-tokens", "4",
                "--repeats", "1", "--warmup", "0", "--draft", "2", "--imitation", "none", "--do-sample",
                "--temperature", "0.7", "--top-p", "0.9", "--output", str(out)])
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["methods"]] == ["transformers_sample", "sample", "ssd_d2", "draft_only"]
    assert all(r["tokens_identical"] is None for r in data["methods"])  # random outputs are not compared


@pytest.mark.parametrize("bad", [["--draft", "0"], ["--draft", "x"], ["--n", "9"], ["--batch-size", "0"],
                                 ["--do-sample", "--temperature", "0"], ["--do-sample", "--top-p", "1.5"],
                                 ["--skip-layers", "1,9"], ["--skip-search-trials", "-1"]])
def test_command_rejects_impossible_settings(bad, tmp_path):
    with pytest.raises((SystemExit, ValueError),
                       match="--draft|--n=9: the draft exit layer must be in|--batch-size|--temperature|--top-p"
                             "|skip_layers|--skip-search-trials"):
        bench_main(["--backbone", "tiny-llava", "--output", str(tmp_path / "r.json"), *bad])
    assert not (tmp_path / "r.json").exists()


def test_draft_verify_is_a_method_with_its_searched_skip_set(tmp_path):
    out = tmp_path / "r.json"
    bench_main(["--backbone", "tiny-llava", "--num-samples", "2", "--max-new-tokens", "6", "--repeats", "1",
                "--warmup", "0", "--draft", "3", "--imitation", "none", "--skip-search-trials", "4",
                "--skip-search-samples", "2", "--output", str(out)])
    data = json.loads(out.read_text())
    dv = next(r for r in data["methods"] if r["method"] == "draft_verify")
    assert dv["skip_layers"] == data["skip_layers"] and 0 < len(dv["skip_layers"]) < data["L"]
    assert dv["tokens_identical"] is True and dv["d"] == "3" and dv["confidence_threshold"] == 0.8
    assert dv["mean_accepted_len"] >= 1.0


@pytest.mark.parametrize("backbone", ["tiny-qwen2.5-vl", "tiny-llava-next"])
def test_new_families_are_benchmarked_with_token_identity(backbone, tmp_path):
    cfg = BenchConfig(backbone=backbone, n=2, drafts=["3"], imitation="none", num_samples=2, batch_sizes=[2],
                      max_new_tokens=6, repeats=1, warmup=0, skip_layers=[2])
    report = run_benchmark(cfg, log=lambda s: None)
    assert [r["method"] for r in report["methods"]] == ["transformers_greedy", "greedy", "ssd_d3", "draft_only",
                                                        "draft_verify"]
    identical = {r["method"]: r["tokens_identical"] for r in report["methods"]}
    assert identical == {"transformers_greedy": True, "greedy": True, "ssd_d3": True, "draft_only": False,
                         "draft_verify": True}  # the draft alone is not the full model


def test_the_draft_spec_comes_from_the_draft_and_a_different_n_is_refused(tmp_path):
    vlm = load_backbone("tiny-llava")  # L = 4
    save_draft(ImitationNetwork(vlm.decoder.hidden_size).eval(), 2, vlm, "tiny-llava", tmp_path / "draft")
    assert bench_spec(str(tmp_path / "draft"), None, vlm).n == 2
    assert bench_spec(str(tmp_path / "draft"), 2, vlm).n == 2
    assert (bench_spec("none", None, vlm).n, bench_spec("none", None, vlm).imitation) == (1, None)  # L // 4
    with pytest.raises(ValueError, match=r"^--n=3, but the imitation network of .*draft reads layer n=2; set --n to 2"):
        bench_spec(str(tmp_path / "draft"), 3, vlm)
