"""The rest of the paper's tables and sentences from hand-written records: cells, buckets, words chosen by numbers."""

import math

import pytest

from lightning_ssd.reproduce.rest_figures import length_sentence, natural_buckets
from lightning_ssd.reproduce.rest_report import _zero_shot_sentences
from lightning_ssd.reproduce.rest_tables import PAPER_TABLE3, Col, markdown, speed_words, value


def _seq(length: int, seconds: float, cycles: int, accepted: int, judged: int) -> dict:
    return {"length": length, "cycles": cycles, "accepted": accepted, "judged": judged, "prefill_s": 0.0,
            "decode_s": seconds}


def _record(ssd_speedup: float, cider: float, alpha: float) -> dict:
    return {"n": 2, "L": 8, "metrics": {
        "test/full/CIDEr": cider, "test/ssd/CIDEr": cider, "test/ssd/speedup": ssd_speedup, "test/ssd/alpha": alpha,
        "test/ssd/tau": 3.0, "test/ssd_identical": 1.0, "test/draft/CIDEr": cider / 2, "test/draft/speedup": 3.0},
        "per_sequence": {"full": [_seq(10, 1.0, 10, 0, 0)], "ssd": [_seq(10, 0.5, 3, 7, 9)]}}


def test_value_reads_modes_and_defaults():
    r = _record(1.5, 100.0, 0.9)
    assert value(r, "full", "speedup") == 1.0
    assert value(r, "ssd", "identical") == 100.0
    assert value(r, "ssd", "length") == 10
    assert math.isnan(value(r, "draft_verify", "speedup")) and math.isnan(value(None, "ssd", "CIDEr"))


def test_markdown_marks_rows_not_run_and_shows_paper_values():
    text = markdown("T", (Col("CIDEr", "CIDEr"), Col("Spd.", "speedup", digits=2, suffix="x"),
                          Col("Spd. (paper)", paper="Spd.", digits=2, suffix="x")),
                    {None: [_record(1.5, 100.0, 0.9), _record(1.7, 110.0, 0.9)]}, PAPER_TABLE3, ["a note"])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "105.0 [100.0–110.0]" in rows["ours: SSD"] and "1.60x [1.50–1.70]" in rows["ours: SSD"]
    assert "1.55x" in rows["ours: SSD"]
    assert "LayerSkip (not run)" in rows and "Draft & Verify (not run)" in rows
    assert "- a note" in text and "LayerSkip's row was not run" in text


@pytest.mark.parametrize(("ours", "words"), [(0.8, "slowdown"), (1.6, "matches"), (2.5, "above"), (1.1, "below")])
def test_speed_words(ours, words):
    assert words in speed_words(ours, 1.55)


def test_zero_shot_sentence_follows_the_numbers():
    zs = {"in": [_record(2.0, 120.0, 0.95)], "near": [_record(1.8, 100.0, 0.9)], "out": [_record(1.5, 60.0, 0.8)]}
    first, shift = _zero_shot_sentences(zs)
    assert "120.0 / 100.0 / 60.0" in first and "falls by 60.0" in first
    assert "alpha 0.950 in, 0.900 near, 0.800 out" in shift and "2.00x, 1.80x, 1.50x" in shift
    flat = {s: [_record(2.0, 120.0, 0.95)] for s in ("in", "near", "out")}
    assert "drop is small" in _zero_shot_sentences(flat)[0]


def test_natural_buckets_pool_tasks_by_the_full_models_length():
    short = {"per_sequence": {"full": [_seq(3, 0.3, 3, 0, 0)], "ssd": [_seq(3, 0.6, 2, 1, 2)]}}
    long = {"per_sequence": {"full": [_seq(40, 4.0, 40, 0, 0), _seq(50, 5.0, 50, 0, 0)],
                             "ssd": [_seq(40, 2.0, 10, 30, 36), _seq(50, 2.5, 10, 40, 46)]}}
    rows = natural_buckets({"vqa": short, "long": long, "missing": None})
    assert [r["sequences"] for r in rows] == [1, 2, 0]
    assert rows[0]["tasks"] == ["vqa"] and rows[1]["tasks"] == ["long"]
    assert rows[0]["speedup"] == pytest.approx(0.5) and rows[1]["speedup"] == pytest.approx(2.0)
    assert rows[1]["tau"] == pytest.approx(90 / 20) and rows[1]["alpha"] == pytest.approx(70 / 82)
    assert math.isnan(rows[2]["speedup"])


def test_length_sentence_says_whether_the_speedup_holds():
    def cap(full_ms: float, ssd_ms: float) -> dict:
        return {"metrics": {"test/full/ms_per_token": full_ms, "test/ssd/ms_per_token": ssd_ms,
                            "test/ssd/speedup": full_ms / ssd_ms}}

    length = {"caps": {"16": cap(4.0, 2.0), "64": cap(4.4, 2.0), "256": cap(6.0, 2.4)}}
    text = length_sentence(length)
    assert "from 4.00 to 6.00 ms (1.50x)" in text and "grows with length (2.00x, 2.20x, 2.50x" in text


def _grid_record(n: int, speed: dict[str, float], reward: dict[str, float]) -> dict:
    from lightning_ssd.reproduce.grid import LABELS, slug

    metrics = {f"test/ssd_{slug(c)}/{k}": v for c in LABELS for k, v in (("speedup", speed[c]), ("alpha", 0.9),
                                                                         ("tau", 4.0))}
    return {"n": n, "L": 24, "d": 6, "images": 4, "metrics": metrics, "params": dict.fromkeys(LABELS, 10),
            "reward": reward}


def test_grid_sentence_names_the_fastest_cell_and_whether_the_reward_finds_it():
    from lightning_ssd.reproduce.grid import LABELS
    from lightning_ssd.reproduce.grid_report import grid_markdown, grid_sentence

    flat = dict.fromkeys(LABELS, 1.5)
    records = {1: _grid_record(1, flat | {"2 linear": 2.4}, flat | {"none": 3.0}),
               2: _grid_record(2, flat, flat)}
    text = grid_sentence(records, chosen_n=2)
    assert "n = 1 of L = 24" in text and "imitation 2 linear at 2.40x" in text
    assert "chose n = 2: not the winning n" in text
    outside = grid_sentence(records, chosen_n=10)
    assert "chose n = 10: outside the grid (n = 1, 2)." in outside and "nan" not in outside
    assert "ranks n = 1, none first (3.00x predicted): not the fastest cell; measured there 1.50x" in text
    same = {1: _grid_record(1, flat | {"2 linear": 2.4}, flat | {"2 linear": 2.0})}
    assert "so the search would have found it" in grid_sentence(same, chosen_n=1)
    assert grid_markdown({1: None}, None, 3).count("| 1 |") == len(LABELS)


def test_a_line_per_seed_gives_each_seeds_fastest_cell_and_the_rewards_pick():
    from lightning_ssd.reproduce.grid import LABELS
    from lightning_ssd.reproduce.grid_report import grid_markdown

    flat = dict.fromkeys(LABELS, 1.5)
    seed0 = {1: _grid_record(1, flat | {"2 linear": 2.4}, flat | {"2 linear": 2.0})}
    seed1 = {1: _grid_record(1, flat | {"1 linear": 2.1}, flat | {"none": 3.0})}
    text = grid_markdown(seed0, 1, 3, {0: seed0, 1: seed1, 2: {1: None}})
    assert ("Seed by seed: seed 0: fastest n = 1, 2 linear (2.40x); the NAS reward's first, n = 1, 2 linear, "
            "measured 2.40x; seed 1: fastest n = 1, 1 linear (2.10x); the NAS reward's first, n = 1, none, measured "
            "1.50x.") in text
    assert "Seed by seed" not in grid_markdown(seed0, 1, 3, {0: seed0})


def test_the_length_line_over_seeds_gives_each_caps_median_and_range():
    from lightning_ssd.reproduce.rest_figures import across_seeds

    def record(*speedups):
        caps = zip((16, 64), speedups, strict=True)
        return {"caps": {str(cap): {"metrics": {"test/ssd/speedup": v}} for cap, v in caps}}

    assert across_seeds((0,), [record(1.2, 1.4)]) is None
    assert across_seeds((0, 1, 2), [record(1.2, 1.4), None, record(1.4, 1.5)]) == (
        "Over seeds 0, 2, SSD's speedup (median [min–max]): 16 tokens 1.30x [1.20–1.40]; 64 tokens 1.45x [1.40–1.50].")


def test_readme_indexes_the_rest_files_that_exist(tmp_path):
    from lightning_ssd.reproduce.rest_report import index_lines

    assert index_lines(tmp_path) == []
    (tmp_path / "table3.md").write_text("x")
    assert len(index_lines(tmp_path)) == 1 and "[table3.md](table3.md)" in index_lines(tmp_path)[0]


@pytest.mark.parametrize("backbone", ["base-llava", "base-blip2-opt"])
def test_table4_is_answered_by_table1_on_a_llava_backbone(tmp_path, backbone):
    import json

    from lightning_ssd.reproduce.context import ReportContext
    from lightning_ssd.reproduce.layout import MAIN_ROW, Layout
    from lightning_ssd.reproduce.rest_report import table4
    from lightning_ssd.reproduce.settings import Settings

    layout = Layout(tmp_path, 0)
    record = layout.test_metrics("table1", MAIN_ROW)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"metrics": {"test/full/CIDEr": 150.0, "test/ssd/CIDEr": 150.0,
                                              "test/ssd/speedup": 1.9}}))
    ctx = ReportContext(Settings(backbone=backbone), (layout,), tmp_path / "out", {}, "cmd", tmp_path / "t.json")
    text = table4(ctx)
    if backbone == "base-llava":
        assert "| ours: SSD (CE+CS+KD) | 150.0 | 1.90x | 136.5 | 1.77x |" in text and "LLaVA-1.5 architecture" in text
    else:
        assert "| ours: SSD (CE+CS+KD) | — | — | 136.5 | 1.77x |" in text and "not CLIP + Llama" in text


def test_a_backbone_that_writes_one_caption_for_every_image_is_called_collapsed():
    from lightning_ssd.reproduce.rest_tables import collapse_sentence

    def record(texts):
        return {"metrics": {}, "per_sequence": {"full": [{"length": 5, "text": t} for t in texts]}}

    one = record(["a photo of a large white circle ."] * 38 + ["a red square .", "two cats ."])
    varied = record([f"caption {i}" for i in range(40)])
    text = collapse_sentence([varied, one], "captions", (0, 1))
    assert "**Collapsed backbone** (seed 1: 3 distinct captions over 40 test sequences)" in text
    assert collapse_sentence([varied, varied], "captions", (0, 1)) is None
    assert collapse_sentence([{"metrics": {}, "per_sequence": {"full": [{"length": 5}]}}], "captions", (0,)) is None


@pytest.mark.parametrize(("shifted", "tuned", "words"), [
    (0.80, 0.88, "(a drop of 0.130); after the fine-tune 0.880, recovering 62% of the drop"),
    (0.925, 0.88, "(a drop of 0.005); after the fine-tune 0.880, with no measurable drop to recover (under 0.02): "
                  "the fine-tune lowered alpha by 0.045"),
    (0.925, 0.92, "(a drop of 0.005); after the fine-tune 0.920, with no measurable drop to recover (under 0.02);"),
])
def test_the_shift_note_says_what_the_fine_tune_recovered_or_cost(tmp_path, shifted, tuned, words):
    from lightning_ssd.reproduce.context import ReportContext
    from lightning_ssd.reproduce.layout import Layout
    from lightning_ssd.reproduce.plan import atomic_write_json
    from lightning_ssd.reproduce.rest_report import shift_table
    from lightning_ssd.reproduce.rest_stages import RestLayout
    from lightning_ssd.reproduce.settings import Settings

    def record(alpha):
        return {"metrics": {"test/ssd/alpha": alpha, "test/ssd/speedup": 2.0, "test/ssd/tau": 4.0,
                            "test/draft_imit/CIDEr": 100.0, "test/ssd_identical": 1.0}}

    layout = Layout(tmp_path, 0)
    for split in ("near", "out"):
        atomic_write_json(RestLayout(layout.folder).shift_record(split), record(tuned))
    ctx = ReportContext(Settings(), (layout,), tmp_path / "out", {}, "cmd", tmp_path / "timings.json")
    text = shift_table(ctx, {"in": [record(0.93)], "near": [record(shifted)], "out": [record(shifted)]})
    assert f"near: alpha 0.930 in-domain -> {shifted:.3f} on near images " + words in text
