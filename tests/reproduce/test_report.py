"""Pieces of the report and the plan that need no training: cells over seeds, notes from values, hooks, lambda."""

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from lightning_ssd.reproduce import figures, stages
from lightning_ssd.reproduce.cli_stages import RunContext
from lightning_ssd.reproduce.context import ReportContext
from lightning_ssd.reproduce.exit_layers import choose_n
from lightning_ssd.reproduce.layout import Layout
from lightning_ssd.reproduce.notes import draft_verify, draft_without_imitation, identity, loss_order
from lightning_ssd.reproduce.report import seeds_sentence, wall_times
from lightning_ssd.reproduce.report_tables import table1, table6
from lightning_ssd.reproduce.results import Aggregate, measure
from lightning_ssd.reproduce.settings import QUICK, Settings, lambda_value
from lightning_ssd.reproduce.sweep import sweep_mode


def _cells(**values):
    return {k: Aggregate((v,)) for k, v in values.items()}


def test_cells_give_median_and_range_over_seeds():
    assert Aggregate((41.0,)).fmt() == "41.0"
    assert Aggregate((2.0, 1.0, 4.0)).fmt(2, "x") == "2.00x [1.00–4.00]"
    assert Aggregate((float("nan"),)).fmt() == "—"


def test_measure_reads_one_mode_and_its_draft():
    record = {"n": 4, "L": 24, "metrics": {"test/ssd/CIDEr": 200.0, "test/ssd/speedup": 1.9, "test/ssd/tau": 4.1,
                                           "test/ssd_identical": 1.0, "test/draft_imit/CIDEr": 190.0}}
    row = measure(record, "ssd", "draft_imit")
    assert (row["CIDEr"], row["Spd."], row["identical"], row["draft CIDEr"], row["n"]) == (200.0, 1.9, 100.0, 190.0, 4)
    assert measure(record, "full")["n"] == 24 and measure(record, "full")["Spd."] == 1.0


def test_the_draft_note_follows_the_measured_value():
    far = draft_without_imitation({"draft": _cells(CIDEr=64.4)})
    assert "far above the paper's near-zero 1.7" in far and "64.4" in far
    assert "near-zero as in the paper" in draft_without_imitation({"draft": _cells(CIDEr=0.8)})
    assert draft_without_imitation({"draft": None}) is None


def test_the_loss_note_says_whether_the_order_is_the_papers():
    rows = {k: _cells(**{"Spd.": s, "tau": 4.0}) for k, s in (("ours_ce", 1.2), ("ours_cs", 1.3), ("ours_cs_kd", 1.4))}
    assert "the paper's order" in loss_order(rows) and "not the paper's" not in loss_order(rows)
    rows["ours_ce"] = _cells(**{"Spd.": 1.5, "tau": 4.05})
    assert "not the paper's order" in loss_order(rows) and "timing variation" in loss_order(rows)


def test_the_draft_verify_note_names_each_seeds_skip_count():
    rows = {"draft_verify": _cells(**{"Spd.": 1.1, "identical": 100.0}), "ours_cs_kd": _cells(**{"Spd.": 1.8})}
    assert "1.10x here, skipping 14 of 24 layers (skip set" in draft_verify(rows, 24, [14, 14])
    assert "skipping 14, 15 of 24 layers (seed by seed)" in draft_verify(rows, 24, [14, 15])
    assert "1.10x here (skip set" in draft_verify(rows, 24, [])
    assert "full model's on every test image in every seed" in draft_verify(rows, 24, [])
    rows["draft_verify"] |= _identity((100.0, float("nan")), (99.5, 100.0))
    assert ("not the full model's on every test image (99.5% in its worst seed, 100% in float64: rounding ties)"
            in draft_verify(rows, 24, []))


def test_a_missing_hook_config_makes_its_stages_say_so(tmp_path, monkeypatch):
    monkeypatch.setitem(stages.HOOK_CONFIGS, "layerskip", stages.SYNTHETIC / "no_such_layerskip.yaml")
    layout = Layout(tmp_path, 0)
    plan = stages.SeedPlan(RunContext(QUICK, 0, layout.folder, tmp_path), layout, "").build()
    hooks = [s for s in plan if s.name.startswith("layerskip")]
    assert len(hooks) == 2
    assert all(s.unavailable() == "needs experiments/synthetic/no_such_layerskip.yaml" for s in hooks)
    report = stages.build_plan(QUICK, tmp_path, tmp_path / "out", "cmd")[-1]
    assert report.name == "report" and "seed0 layerskip finetune" in report.optional_deps
    assert "seed0 layerskip finetune" not in report.deps


def test_one_stage_per_seed_in_seed_folders(tmp_path):
    plan = stages.build_plan(Settings(seeds=(0, 1)), tmp_path, tmp_path / "out", "cmd")
    names = [s.name for s in plan]
    assert "seed0 finetune" in names and "seed1 test cs_kd" in names
    assert next(s for s in plan if s.name == "seed1 finetune").outputs == (tmp_path / "seed1" / "finetune" /
                                                                           "stage.json",)
    assert next(s for s in plan if s.name == "seed1 imitation ce_only").deps == ("seed1 finetune",)


def test_lambda_values_and_the_chosen_layer():
    assert lambda_value("1/L", 24) == pytest.approx(1 / 24) and lambda_value("1/10", 24) == 0.1
    with pytest.raises(ValueError, match="--lambdas: 'a lot'"):
        lambda_value("a lot", 24)
    confidence = [0.50, 0.70, 0.78, 0.80, 0.81]  # layers 1..5
    assert choose_n(confidence, 6, "1/10") == 2  # 0.6, 0.5, 0.48, ...
    assert choose_n(confidence, 6, "0") == 5  # no cost: the most confident layer, above L/2 = 3
    assert choose_n([0.5, 0.6], 3, "0.1") == 1  # a tie goes to the shallower layer


def test_settings_refuse_what_cannot_run():
    with pytest.raises(ValueError, match="--mixed-joint-epochs"):
        Settings(figure_epochs=2, mixed_joint_epochs=2)
    with pytest.raises(ValueError, match="--seeds"):
        Settings(seeds=())
    with pytest.raises(ValueError, match="--test-batch-size"):
        Settings(test_batch_size=0)
    with pytest.raises(ValueError, match="exit_rule"):
        Settings(exit_rule="deepest")
    assert Path(stages.LAYERSKIP_TEST).parent == stages.SYNTHETIC


def test_help_and_dry_run(tmp_path, capsys):
    from lightning_ssd.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--help"])
    assert exit_info.value.code == 0 and "--quick" in capsys.readouterr().out
    main(["reproduce", "--dry-run", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "estimated" in out and "[1/78] seed0 finetune: ~5.5 min" in out and "report rest" in out
    assert "[78/78] report: " in out
    for parts, count, last in (("tables", 28, "report"), ("rest", 50, "report rest")):
        main(["reproduce", "--dry-run", "--parts", parts, "--root", str(tmp_path / "runs")])
        assert f"[{count}/{count}] {last}: " in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def _history(full, draft):
    return {"val": {"val/full/BLEU-4": full, "val/draft_imit/BLEU-4": draft}}


def test_the_training_figure_notes_follow_the_last_epochs():
    from lightning_ssd.reproduce.report import training_sentences

    frozen = _history([39.0, 39.0], [36.0, 38.0])
    # joint training that hurts the full model, and a mixed run that loses too: the paper's findings
    paper_like = training_sentences({"frozen": frozen, "joint": _history([38.0, 35.0], [37.0, 36.0]),
                                     "mixed": _history([38.0, 37.5], [37.0, 37.5])})
    assert paper_like["fig7"].startswith("As in the paper") and "4.0 BLEU-4 below" in paper_like["fig7"]
    assert "1.5 BLEU-4 below the frozen one's, the performance loss the paper describes" in paper_like["fig8"]
    # joint training that improves it, and a mixed run within the noise band
    ours_like = training_sentences({"frozen": frozen, "joint": _history([38.7, 43.2], [39.5, 43.4]),
                                    "mixed": _history([38.7, 38.7], [39.5, 39.6])})
    assert ours_like["fig7"].startswith("Not here") and "4.2 BLEU-4 above" in ours_like["fig7"]
    assert "no measurable loss" in ours_like["fig8"]
    assert "joint: full model BLEU-4 38.7 -> 43.2" in ours_like["fig1"]
    missing = training_sentences({"frozen": frozen})
    assert set(missing) == {"fig1", "fig7", "fig8"} and "No per-epoch" in missing["fig7"]


def _write(path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def _test_record(n: int, speedup: float) -> dict:
    return {"n": n, "L": 6, "metrics": {"test/ssd/speedup": speedup, "test/ssd/BLEU-4": 40.0}}


def test_table6_shows_each_rules_n_and_speedup_in_each_seed(tmp_path):
    settings = replace(QUICK, seeds=(0, 1, 2), lambdas=("1/10",))
    layouts = tuple(Layout(tmp_path, seed) for seed in settings.seeds)
    for layout, (table1_n, lambda_n, speed_n) in zip(layouts[:2], ((3, 1, 2), (2, 2, 1)), strict=True):
        _write(layout.finetune_record, {"n": table1_n, "L": 6})
        _write(layout.test_metrics("table1", "cs_kd"), _test_record(table1_n, 1.0 + table1_n / 10))
        for record, n in ((layout.lambda_record("1/10"), lambda_n), (layout.speedup_rule_record, speed_n)):
            run = _write(layout.folder / "table6" / f"n{n}" / "metrics.json", _test_record(n, 2.0 + n / 10))
            _write(record, {"n": n, "metrics": str(run)})
    _write(layouts[2].finetune_record, {"n": 3, "L": 6})  # seed 2 fine-tuned, its rows not run yet
    ctx = ReportContext(settings, layouts, tmp_path / "out", {}, "cmd", tmp_path / "timings.json")
    text = table6(ctx)
    section = text[text.index("## Each rule's n and speedup per seed"):]
    head, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
                   if line.startswith("|") and "---" not in line]
    assert head == ["method", "seed 0", "seed 1", "seed 2"]
    assert rows[0][1:] == ["n = 3: 1.30x", "n = 2: 1.20x", "—"]  # Table 1's rule
    assert rows[1][0] == "ours: lambda = 1/10" and rows[1][1:] == ["n = 1: 2.10x", "n = 2: 2.20x", "—"]
    assert rows[2][1:] == ["n = 2: 2.20x", "n = 1: 2.10x", "—"]  # the speedup rule
    assert "n = 3, 2, 3 for seeds 0, 1, 2" in table1(ctx)
    one_seed = ReportContext(replace(settings, seeds=(0,)), layouts[:1], tmp_path / "out", {}, "cmd",
                             tmp_path / "timings.json")
    assert "per seed" not in table6(one_seed) and "Draft exit n = 3," in table1(one_seed)


def test_the_readme_says_how_the_figures_readings_vary_over_seeds(tmp_path):
    settings = replace(QUICK, seeds=(0, 1))
    layouts = tuple(Layout(tmp_path, seed) for seed in settings.seeds)
    for layout, (joint, fastest) in zip(layouts, ((43.0, 2), (38.0, 4)), strict=True):
        for run, full in (("frozen", 39.0), ("joint", joint), ("mixed", 39.5)):
            _write(layout.history(run), {"val": {figures.FULL: [38.0, full], figures.DRAFT: [30.0, 31.0]}})
        speeds = {d: 1.0 + (d == fastest) for d in (1, 2, 4)}
        _write(layout.sweep, {"drafts": [1, 2, 4],
                              "metrics": {f"test/{sweep_mode(d)}/speedup": v for d, v in speeds.items()}})
    ctx = ReportContext(settings, layouts, tmp_path / "out", {}, "cmd", tmp_path / "timings.json")
    sentence = seeds_sentence(ctx)
    assert "joint run minus frozen run: +4.0, -1.0" in sentence and "mixed run minus frozen run: +0.5, +0.5" in sentence
    assert sentence.endswith("the fastest d of Figure 9: 2, 4.")
    assert seeds_sentence(replace(ctx, layouts=layouts[:1])) is None


def _identity(*seeds: tuple[float, float]) -> dict[str, Aggregate]:
    """A row's identity and float64 recheck per seed (NaN: float32 needed no recheck)."""
    return {"identical": Aggregate(tuple(s[0] for s in seeds)),
            "identical in float64": Aggregate(tuple(s[1] for s in seeds))}


def test_the_identity_note_reads_the_worst_seed_not_the_median():
    nan = float("nan")
    rows = {"ours_cs_kd": _identity((100.0, nan), (100.0, nan), (100.0, nan)),
            "layerskip": _identity((100.0, nan), (100.0, nan), (99.5, nan))}
    assert "Every SSD row's output is identical" in identity(rows, ("ours_cs_kd",))
    note = identity(rows, ("ours_cs_kd", "layerskip"))
    assert "not identical" in note and "layerskip (99.5% in its worst seed)" in note and "ours_cs_kd" not in note


def test_the_identity_note_tells_rounding_ties_from_a_defect_by_the_float64_recheck():
    nan = float("nan")
    tie = identity({"layerskip": _identity((100.0, nan), (99.0, 100.0), (99.5, 100.0))}, ("layerskip",))
    assert "layerskip (99.0% in its worst seed, 100% in float64: rounding ties)" in tie
    defect = identity({"layerskip": _identity((99.5, 100.0), (98.0, 98.5))}, ("layerskip",))
    assert "layerskip (98.0% in its worst seed, 98.5% in float64: a defect)" in defect
    # a defect in a seed other than the worst one is not hidden by the worst seed's ties
    hidden = identity({"layerskip": _identity((99.5, 99.5), (98.0, 100.0))}, ("layerskip",))
    assert "99.5% in float64: a defect" in hidden


def test_measure_reads_the_float64_recheck_of_the_rows_mode():
    record = {"n": 4, "L": 24, "metrics": {"test/ssd_identical": 0.995, "test/draft_verify_identical": 0.99},
              "float64": {"metrics": {"test/ssd_identical": 1.0, "test/draft_verify_identical": 0.995},
                          "mismatches": {"ssd": [], "draft_verify": [{"sample_id": 3}]}}}
    assert measure(record, "ssd")["identical in float64"] == 100.0
    assert measure(record, "draft_verify")["identical in float64"] == 99.5
    assert math.isnan(measure(record, "full")["identical in float64"])
    assert math.isnan(measure({"metrics": {"test/ssd_identical": 1.0}}, "ssd")["identical in float64"])


def test_the_wall_time_line_gives_each_seeds_share(tmp_path):
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"seed0 finetune": {"seconds": 600.0, "status": "done"},
                                "seed1 finetune": {"seconds": 300.0, "status": "done"},
                                "seed1 test": {"seconds": 60.0, "status": "failed"},
                                "report": {"seconds": 6.0, "status": "done"}}))
    total, rows = wall_times(SimpleNamespace(timings=path))
    assert total == "15.1 min; seed 0: 10.0 min, seed 1: 5.0 min" and len(rows) == 3
