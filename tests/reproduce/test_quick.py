"""`python -m lightning_ssd reproduce --quick --parts tables` end to end into tmp_path, then again (every stage
skipped); `test_rest_quick.py` runs the other part."""

import json
import math
import re

import pytest
import yaml
from PIL import Image, ImageStat

from lightning_ssd.__main__ import main
from lightning_ssd.reproduce.report import FIGURES, TABLES

PAPER_COLUMNS = {
    "table1.md": ["n (paper)", "BLEU-1 (paper)", "BLEU-4 (paper)", "CIDEr (paper)", "SPICE (paper)",
                  "METEOR (paper)", "ROUGE-L (paper)", "Spd. (paper)"],
    "table5.md": ["n (paper)", "BLEU-4 (paper)", "CIDEr (paper)", "METEOR (paper)", "Spd. (paper)"],
    "table6.md": ["n (paper)", "BLEU-4 (paper)", "CIDEr (paper)", "METEOR (paper)", "SPICE (paper)", "Spd. (paper)"],
}
OURS = ["BLEU-4", "CIDEr", "Spd."]  # measured in every row of ours (METEOR is off under --quick)
PAPER_CELLS = {"table1.md": ("Our+CS+KD", "CIDEr (paper)", "142.6"), "table5.md": ("Average", "Spd. (paper)", "1.68x"),
               "table6.md": ("1/50", "n (paper)", "21")}


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def _number(cell: str) -> float:
    match = re.match(r"-?\d+(\.\d+)?", cell)
    return float(match.group()) if match else math.nan


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    args = ["reproduce", "--quick", "--parts", "tables", "--root", str(root / "runs"), "--out", str(root / "out")]
    return root, args


def test_quick_run_writes_every_table_and_figure(quick, capsys):
    root, args = quick
    main(args)
    printed = capsys.readouterr().out
    assert re.search(r"reproduce: \d+ stages, estimated \d+ min", printed)
    assert re.search(r"\[1/\d+\] seed0 finetune \.\.\. done in ", printed)
    out = root / "out"
    for name in (*TABLES, *FIGURES, "README.md"):
        assert (out / name).exists(), name
    for name in TABLES:
        head, rows = _table((out / name).read_text())
        assert all(c in head for c in PAPER_COLUMNS[name]), name
        measured = [r for r in rows if "not run" not in r[0]]
        assert len(measured) >= 3, name
        for row in measured:
            for column in OURS:
                assert math.isfinite(_number(row[head.index(column)])), f"{name} {row[0]} {column}"
        label, column, value = PAPER_CELLS[name]
        assert next(r for r in rows if r[1] == label)[head.index(column)] == value
        assert "\n- " in (out / name).read_text()  # the notes under the table
    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300
            assert max(ImageStat.Stat(image.convert("L")).stddev) > 5, f"{name} looks blank"
    readme = (out / "README.md").read_text()
    assert "python -m lightning_ssd reproduce --quick" in readme and "fig9_d.png" in readme
    assert "table3.md" not in readme  # the rest's files are indexed only when they exist


def test_test_stages_decode_in_the_settings_test_batches(quick):
    from lightning_ssd.reproduce.settings import QUICK

    root, _ = quick
    records = sorted((root / "runs" / "seed0").glob("table*/*/test/metrics.json"))
    assert records
    for path in records:
        assert json.loads(path.read_text())["eval_batch_size"] == QUICK.test_batch_size, path


def test_table6_has_the_speedup_rule_row_at_its_recorded_n(quick):
    root, _ = quick
    conf = json.loads((root / "runs" / "seed0" / "table6" / "confidences.json").read_text())
    L = conf["L"]
    assert conf["layers"] == list(range(1, L)) and len(conf["mean_agreement"]) == L - 1
    predicted = conf["speedup_rule"]["predicted_speedup"]
    assert conf["speedup_rule"]["n"] == conf["layers"][predicted.index(max(predicted))]
    head, rows = _table((root / "out" / "table6.md").read_text())
    row = next(r for r in rows if r[0].startswith("ours: speedup rule"))
    assert _number(row[head.index("n")]) == conf["speedup_rule"]["n"]
    assert math.isfinite(_number(row[head.index("Spd.")]))


def test_table1_n_comes_from_the_reward_rule_whatever_finetune_yaml_names(quick):
    root, _ = quick
    fragment = yaml.safe_load((root / "runs" / "fragments" / "finetune_one_se_callbacks.yaml").read_text())
    rules = [c["init_args"]["rule"] for c in fragment["trainer"]["callbacks"]
             if c["class_path"].endswith("ChooseLayerCallback")]
    assert rules == ["one_se"]
    chosen = (root / "runs" / "seed0" / "finetune" / "chosen_n.yaml").read_text()
    assert "rule=one_se" in chosen.splitlines()[0]


def test_second_quick_run_skips_every_stage_but_the_report(quick, capsys):
    root, args = quick
    main(args)
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    stages, reports = [x for x in lines if "report" not in x], [x for x in lines if "report" in x]
    assert stages and all(re.search(r"\.\.\. skipped \((outputs exist|needs .+)\)$", x) for x in stages), lines
    assert any("report ... done in" in x for x in reports)  # a report always reruns
