"""Every shipped experiment config parses, and its --print_config output parses back to the same config."""

from pathlib import Path

import pytest
import yaml

from lightning_ssd.cli import cli_main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# Shared parts (_base/) and the data engineer's fragments (_data/) are not whole configs.
CONFIGS = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if not p.relative_to(EXPERIMENTS).parts[0].startswith("_"))
SUBCOMMAND = {"ssd_test.yaml": "test", "layerskip_ssd_test.yaml": "test", "nocaps.yaml": "test",
              "choose_n.yaml": "validate", "images.yaml": "predict"}


def _print_config(capsys, subcommand: str, path: Path) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli_main([subcommand, "--config", str(path), "--print_config"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err[-2000:]
    return yaml.safe_load(captured.out)


def test_there_are_configs():
    names = {p.relative_to(EXPERIMENTS).as_posix() for p in CONFIGS}
    assert {"synthetic.yaml", "coco.yaml", "nocaps.yaml", "visdial.yaml", "vqav2.yaml", "llava.yaml",
            "synthetic/finetune.yaml", "synthetic/ssd_test.yaml", "coco_qwen2.5-vl.yaml",
            "coco_qwen2.5-vl_finetune.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_config_parses_and_round_trips(path, tmp_path, capsys):
    raw = yaml.safe_load(path.read_text())
    assert "seed_everything" in raw, f"{path} must set seed_everything"
    assert "class_path" in raw["model"]
    assert isinstance(raw["data"], str) or "class_path" in raw["data"]  # inline, or a file holding class_path
    subcommand = SUBCOMMAND.get(path.name, "fit")
    printed = _print_config(capsys, subcommand, path)
    assert printed["checkpoint"]["save_last"] is True
    again = tmp_path / "printed.yaml"
    again.write_text(yaml.safe_dump(printed))
    assert _print_config(capsys, subcommand, again) == printed


def test_callbacks_with_exit_rule_sets_only_the_chooser_rule(tmp_path):
    from lightning_ssd.configs import EXPERIMENTS, callbacks_with_exit_rule

    source = EXPERIMENTS / "synthetic" / "finetune.yaml"
    original = yaml.safe_load(source.read_text())["trainer"]["callbacks"]
    path = callbacks_with_exit_rule(source, "argmax", tmp_path / "fragment.yaml")
    callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
    assert [c["class_path"] for c in callbacks] == [c["class_path"] for c in original]
    chooser = next(c for c in callbacks if c["class_path"].endswith("ChooseLayerCallback"))
    assert chooser["init_args"]["rule"] == "argmax"
    assert chooser["init_args"]["draft"] == 6  # the config's other arguments are kept


def test_callbacks_with_exit_rule_refuses_a_config_without_a_chooser(tmp_path):
    from lightning_ssd.configs import EXPERIMENTS, callbacks_with_exit_rule

    with pytest.raises(ValueError, match="no ChooseLayerCallback"):
        callbacks_with_exit_rule(EXPERIMENTS / "synthetic.yaml", "argmax", tmp_path / "fragment.yaml")
    assert not (tmp_path / "fragment.yaml").exists()


PAPER_SCALE = [p for p in CONFIGS if p.parent == EXPERIMENTS and not p.name.startswith("synthetic")]
SET_BEFORE_RUNNING = "# Set before running"


def _has_key(config: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


@pytest.mark.parametrize("path", PAPER_SCALE, ids=lambda p: p.name)
def test_paper_scale_config_says_which_keys_to_set(path):
    text = path.read_text()
    assert SET_BEFORE_RUNNING in text, f"{path.name} must list the keys a user sets"
    block = text.split(SET_BEFORE_RUNNING, 1)[1].splitlines()[2:]
    keys = [line.split()[1] for line in block if line.startswith("#   ")]
    raw = yaml.safe_load(text)
    assert keys and all(_has_key(raw, key) for key in keys), keys
    assert any(key.startswith("data.init_args.") for key in keys)  # where the data is, always
