"""`python -m lightning_ssd reproduce --quick --parts rest` end to end into tmp_path (about a minute), then again
(every stage skipped)."""

import json
import math
import re
import threading
from http.server import ThreadingHTTPServer

import pytest
from PIL import Image, ImageStat

from lightning_ssd.__main__ import main
from lightning_ssd.data.synth.domains import scene_domain
from lightning_ssd.reproduce.rest_report import REST_FILES
from tests.metrics.test_judge import _ChatHandler, _completion
from tests.reproduce.test_quick import _number, _table


@pytest.fixture(scope="module")
def judge_server():
    """A canned OpenAI-compatible judge on 127.0.0.1: LLaVA-Wild pairs score 8 and 6, MM-Vet answers 0.5."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    server.requests = []
    server.reply = lambda prompt: (200, _completion("8 6" if "[Assistant 1]" in prompt else "0.5"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, judge_server):
    root = tmp_path_factory.mktemp("reproduce_rest")
    return root, ["reproduce", "--quick", "--parts", "rest", "--root", str(root / "runs"), "--out", str(root / "out"),
                  "--judge-url", judge_server, "--judge-model", "canned-judge"]


def _rows(text: str) -> dict[str, list[str]]:
    head, rows = _table(text)
    return {r[0]: dict(zip(head, r, strict=True)) for r in rows}


def test_quick_rest_writes_every_table_and_the_figure(quick, capsys):
    root, args = quick
    main(args)
    printed = capsys.readouterr().out
    assert re.search(r"\[1/\d+\] seed0 finetune dialog \.\.\. done in ", printed)
    out = root / "out"
    assert all((out / name).exists() for name in REST_FILES)
    dialog = _rows((out / "table3.md").read_text().split("# Table 3 (b)")[0])
    assert math.isfinite(_number(dialog["ours: SSD"]["MRR"])) and dialog["ours: SSD"]["MRR (paper)"] == "43.9"
    assert dialog["ours: SSD"]["identical to full model"] == "100.0%"
    for table in ("table3.md", "table2.md", "tableA2.md"):  # every task's LayerSkip row ran, losslessly
        assert "(not run)" not in (out / table).read_text().split("LayerSkip")[1].split("\n")[0], table
    assert dialog["LayerSkip"]["identical to full model"] == "100.0%"
    assert math.isfinite(_number(dialog["LayerSkip"]["MRR"])) and math.isfinite(_number(dialog["LayerSkip"]["Spd."]))
    table3 = (out / "table3.md").read_text()
    zero_shot = _rows("# Table 3 (b)" + table3.split("# Table 3 (b)")[1].split("# Table 3 (c)")[0])
    _, shift = _table("# Table 3 (c)" + table3.split("# Table 3 (c)")[1])
    assert [(r[0], r[1].split(" on ")[-1]) for r in shift] == [
        ("in", "in-domain"), ("near", "in-domain"), ("near", "16 near images"), ("out", "in-domain"),
        ("out", "16 out images")]
    assert all(r[-1] == "100.0%" for r in shift)
    for split in ("in", "near", "out"):
        assert math.isfinite(_number(zero_shot["ours: SSD"][f"Spd. {split}"]))
        assert math.isfinite(_number(zero_shot["full model"][f"{split} CIDEr"]))
    long = _rows((out / "table2.md").read_text())
    assert long["ours: SSD"]["MM-Vet total"] == "50.0" and long["ours: SSD"]["LLaVA-W"] == "75.0"  # the judge's
    assert long["LayerSkip"]["MM-Vet total"] == "50.0" and long["ours: SSD"]["Spd. (paper)"] == "1.85x"
    assert math.isfinite(_number(long["LayerSkip"]["length (tokens)"]))
    assert "canned-judge" in (out / "table2.md").read_text()
    vqa = _rows((out / "tableA2.md").read_text())
    assert math.isfinite(_number(vqa["ours: SSD"]["accuracy"]))
    assert "nothing to draft" in (out / "tableA2.md").read_text()
    length = (out / "length.md").read_text()
    assert "| 16 |" in length and "<= 16" in length and "65-256" in length
    _, grid = _table((out / "grid.md").read_text())
    assert [(r[0], r[1]) for r in grid[:2]] == [("1", "none"), ("1", "1 linear")] and len(grid) == 10
    assert all(math.isfinite(_number(r[3])) and math.isfinite(_number(r[4])) for r in grid)  # Spd., NAS reward
    params = [_number(r[2].replace(",", "")) for r in grid[:5]]
    assert params[0] == 0 and params == sorted(params)  # capacities in order of size
    for name in REST_FILES:
        if name.endswith(".md"):
            assert "\n- " in (out / name).read_text(), name  # the sentences under each table
    for name in ("fig_length.png", "fig_grid.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300
            assert max(ImageStat.Stat(image.convert("L")).stddev) > 5, name


def test_zero_shot_tests_decode_their_own_domain(quick):
    from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item
    from lightning_ssd.reproduce.settings import QUICK

    root, _ = quick
    for split in ("in", "near", "out"):
        record = json.loads((root / "runs" / "seed0" / "rest" / "zeroshot" / f"test_{split}.json").read_text())
        assert record["data"]["test_domain"] == split
        config = SyntheticConfig(num_test=QUICK.num_test, test_domain=split)
        assert all(scene_domain(generate_item(config, "test", i).scene) == split for i in range(QUICK.num_test))


def test_the_shift_fine_tune_starts_from_the_in_domain_imitation(quick):
    root, _ = quick
    rest = root / "runs" / "seed0" / "rest"
    for split in ("near", "out"):
        stage = json.loads((rest / "shift" / split / "imitation" / "stage.json").read_text())
        assert stage["start"] == str(rest / "zeroshot" / "imitation" / "checkpoints" / "last.ckpt")
        assert "--data.init_args.train_domain" in stage["overrides"] and split in stage["overrides"]


def test_second_quick_rest_run_skips_every_stage_but_the_report(quick, capsys):
    root, args = quick
    main(args)
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    stages, reports = [x for x in lines if "report" not in x], [x for x in lines if "report" in x]
    assert stages and all(line.endswith("skipped (outputs exist)") for line in stages), lines
    assert reports[-1].endswith(" s") and "report rest ... done in" in reports[-1]  # a report always reruns
