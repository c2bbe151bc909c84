import json

import pytest
import yaml

from lightning_ssd.__main__ import main


def test_choose_n_writes_a_fragment_the_imitation_stage_accepts(tmp_path):
    out = tmp_path / "chosen_n.yaml"
    main(["choose-n", "--backbone", "tiny-llava", "--batches", "1", "--output", str(out)])
    n = yaml.safe_load(out.read_text())["model"]["init_args"]["n"]
    assert 1 <= n <= 2  # candidates are l <= L/2 for the 4-layer tiny preset


def test_choose_n_speedup_rule(tmp_path):
    out = tmp_path / "chosen_n.yaml"
    main(["choose-n", "--backbone", "tiny-llava", "--batches", "1", "--rule", "speedup", "--draft", "3",
          "--output", str(out)])
    text = out.read_text()
    assert "rule=speedup" in text and "predicted speedup at d=3" in text
    assert 1 <= yaml.safe_load(text)["model"]["init_args"]["n"] <= 2


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    main(["demo", "--quick", "--root", str(tmp_path), "--seed", "3", "--threads", "1"])
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["seed"] == 3 and summary["ssd_identical_test"] == 1.0
    assert summary["bench"]["ssd"]["tokens_identical"]
    assert summary["threads"] == 1 and summary["test_batch_size"] >= 1
    assert {"greedy", "draft_only", "draft_only_imitation"} <= set(summary["bench"]["methods"])
    text = (tmp_path / "results.md").read_text()
    assert text.startswith("# Embedded default: tiny-blip2-opt, seed 3")
    batch = summary["test_batch_size"]
    assert f"| decode speedup, batch 1 (benchmark) | throughput speedup, test batches of {batch} |" in text
    config = yaml.safe_load((tmp_path / "finetune" / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert config["seed_everything"] == 3 and config["model"]["init_args"]["backbone_seed"] == 3
