"""The demo's results table: batch-1 decode latency in the speedup column, the test stage's throughput beside it."""

import json
from pathlib import Path

from lightning_ssd.timing import FLAG
from lightning_ssd.tools.demo import render, results_table

RESULTS = Path(__file__).resolve().parents[2] / "results"


def _record(method: str, speedup: float, flag: str | None = None) -> dict:
    return {"method": method, "batch_size": 1, "speedup_decode": speedup, "speedup_e2e": speedup * 0.9,
            "tokens_identical": True, "mean_accepted_len": 4.37, "acceptance_rate": 0.89, "speedup_flag": flag}


def _summary(ssd_test_speedup: float = 1.10) -> dict:
    ssd = {**_record("ssd_d6", 2.41), "d": "6"}
    tm = {"test/num_sequences": 200.0, "test/ssd_identical": 1.0, "test/ssd/tau": 4.61,
          "test/ssd/speedup_bound": 4.9, "test/ssd/speedup": ssd_test_speedup, "test/draft/speedup": 14.63,
          "test/draft_imit/speedup": 12.89}
    for mode, (bleu, cider) in {"full": (41.4, 203.7), "draft": (9.3, 41.2), "draft_imit": (41.6, 193.5),
                                "ssd": (41.4, 203.7)}.items():
        tm |= {f"test/{mode}/BLEU-4": bleu, f"test/{mode}/CIDEr": cider}
    return {
        "backbone": "base-llava", "seed": 0, "n": 1, "draft": "6", "num_test": 200, "test_batch_size": 50,
        "threads": 1, "test_metrics": tm, "trivial_baseline": {"BLEU-4": 18.9, "CIDEr": 28.5},
        "bench": {"baseline": {"decode_method": "transformers_greedy"}, "ssd": ssd, "num_samples": 24, "repeats": 3,
                  "methods": {"greedy": _record("greedy", 0.97), "ssd_d6": ssd,
                              "draft_only": _record("draft_only", 5.2),
                              "draft_only_imitation": _record("draft_only_imitation", 4.8)}},
        "finetune_samples_per_s": 66.8, "imitation_samples_per_s": 1345.5, "imitation_vs_finetune_throughput": 20.1,
        "timings": {"finetune_s": 330.0, "imitation_s": 198.0, "test_s": 34.0, "bench_s": 21.0, "total_s": 587.0},
    }


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if "---" not in line]


def test_the_speedup_column_is_the_benchmarks_batch_one_latency():
    head, *rows = _rows(results_table(_summary()))
    assert head == ["method", "BLEU-4", "CIDEr", "tau", "decode speedup, batch 1 (benchmark)",
                    "throughput speedup, test batches of 50"]
    assert rows == [
        ["full model", "41.4", "203.7", "—", "0.97x", "1.00x"],
        ["draft w/o imitation", "9.3", "41.2", "—", "5.20x", "14.63x"],
        ["draft w/ imitation", "41.6", "193.5", "—", "4.80x", "12.89x"],
        ["SSD (n=1, d=6)", "41.4", "203.7", "4.61", "2.41x", "1.10x"],
        ["image-blind baseline", "18.9", "28.5", "—", "—", "—"],
    ]


def test_impossible_figures_are_marked_and_explained():
    summary = _summary(ssd_test_speedup=107.7)
    summary["bench"]["ssd"]["speedup_flag"] = "bench ssd_d6 at batch 1: a measured speedup ..."
    text = render(summary)
    ssd_row = next(row for row in _rows(text.split("\n\n")[1]) if row[0].startswith("SSD"))
    assert ssd_row[4:] == [f"2.41x {FLAG}", f"107.70x {FLAG}"]
    assert f"\n{FLAG} exceeds the speedup the measured tau allows" in text
    assert FLAG not in render(_summary())


def test_the_text_says_how_each_column_was_measured():
    text = render(_summary())
    assert text.startswith("# Embedded default: base-llava, seed 0, n=1, d=6, 200 test images\n")
    assert "benchmark (24 test images, median of 3, after a warm-up) decodes one image at a time" in text
    assert "test stage's batches of 50" in text and "1 CPU thread." in text


def test_a_results_file_written_before_these_columns_still_renders():
    summary = json.loads((RESULTS / "demo_seed0_results.json").read_text())
    rows = {row[0]: row for row in _rows(results_table(summary))}
    assert rows["SSD (n=1, d=6)"][4:] == ["2.53x", "1.10x"]  # the benchmark's SSD record was kept; the others not
    assert rows["draft w/o imitation"][4:] == ["—", "14.63x"]
