import json

import pytest
import yaml

from lightning_ssd.__main__ import main
from lightning_ssd.cli import cli_main
from lightning_ssd.configs import EXPERIMENTS


def _choose_n(tmp_path, *args: str) -> tuple[str, int]:
    """The fragment `choose-n` writes for the 4-layer tiny LLaVA (candidates l = 1, 2), and its n."""
    out = tmp_path / "chosen_n.yaml"
    main(["choose-n", "--backbone", "tiny-llava", "--batches", "1", "--output", str(out), *args])
    text = out.read_text()
    return text, yaml.safe_load(text)["model"]["init_args"]["n"]


def _column(text: str, before: str, after: str) -> list[float]:
    """A figure of every `#   l=` row of the fragment, read between `before` and `after`."""
    rows = [line for line in text.splitlines() if line.startswith("#   l=")]
    return [float(row.split(before)[1].split(after)[0]) for row in rows]


def test_choose_n_writes_a_fragment_the_imitation_stage_accepts(tmp_path, monkeypatch):
    text, n = _choose_n(tmp_path)
    confidences, rewards = _column(text, "C_l=", " "), _column(text, "reward=", " ")
    # the paper's reward C_l - l / L with L = 4; an untrained model's confidences are about 1/V at every layer, so
    # the cost of a layer decides: n = 1
    assert rewards == pytest.approx([confidences[0] - 0.25, confidences[1] - 0.5], abs=2e-4)
    assert "rule=argmax" in text and n == 1
    # the imitation stage takes n from the fragment given after its config (its own n is 2)
    monkeypatch.chdir(tmp_path)
    data = ["--data.init_args." + arg for arg in ("num_train=4", "num_val=2", "num_test=2", "batch_size=2",
                                                  "eval_batch_size=2")]
    cli = cli_main(["fit", "--config", str(EXPERIMENTS / "synthetic.yaml"), "--config", str(tmp_path / "chosen_n.yaml"),
                    "--model.init_args.backbone", "tiny-llava", "--model.init_args.max_new_tokens", "4", *data,
                    "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"])
    assert cli.model.n == 1 and cli.model.decoders()["ssd"].n == 1
    assert cli.trainer.state.finished and cli.trainer.callback_metrics["val/ssd_identical"].item() == 1.0


def test_choose_n_argmax_with_a_negative_lambda_takes_the_deepest_candidate(tmp_path):
    text, n = _choose_n(tmp_path, "--lam", "-1")
    assert "lambda=-1.0" in text and n == 2  # rewards C_l + l with C_l in (0, 1]: l = 2 is ahead by 1 + C_2 - C_1 > 0


def test_choose_n_speedup_rule(tmp_path):
    text, n = _choose_n(tmp_path, "--rule", "speedup", "--draft", "3")
    predicted = _column(text, "predicted speedup at d=3 ", "x")
    assert "rule=speedup" in text and len(predicted) == 2
    assert n == 1 + predicted.index(max(predicted))


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
