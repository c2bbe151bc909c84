"""Bad inputs through the real command line: one line naming the culprit, no traceback, nothing written is lost.

Each case runs `python -m lightning_ssd ...` in a subprocess, as a user would. Almost all of them fail before a model
loads; the two that need a model (a draft trained on another backbone, a folder of unreadable images) use a tiny
preset. Progress bars (tqdm lines) are not message lines: they are left out before "the first line" is read.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from tests.models.helpers import REPO, cli_env, tiny_config

_PROGRESS = re.compile(r"\d+%\|")


def _write_yaml(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _set(config: dict, key: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, leaf = key.split(".")
    section = config
    for parent in parents:
        section = section.setdefault(parent, {})
    section[leaf] = value
    return config


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of bad inputs, and of earlier outputs that a failing run must leave alone."""
    root = tmp_path_factory.mktemp("bad")
    (root / "notes.txt").write_text("not a checkpoint\n")
    with zipfile.ZipFile(root / "whole.ckpt", "w") as z:
        z.writestr("archive/data.pkl", b"x" * 4096)
    data = (root / "whole.ckpt").read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (root / "half_draft").mkdir()
    (root / "half_draft" / "config.json").write_text("{}")
    (root / "draft").mkdir()  # what a draft folder holds: enough for the checks made before a model loads
    for name in ("config.json", "model.safetensors"):
        (root / "draft" / name).write_text("{}")
    (root / "images").mkdir()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(root / "images" / "red.png")
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.jpg").write_bytes(b"these bytes are no JPEG")
    (root / "no_images").mkdir()
    (root / "no_images" / "readme.txt").write_text("no pictures here")
    (root / "prompts.jsonl").write_text('{"image": "images/red.png"}\n{"image": "images/red.png", oops}\n')
    (root / "captions.jsonl").write_text('{"id": "earlier run"}\n')  # an earlier output: must survive
    (root / "bench.json").write_text('{"earlier": true}\n')
    (root / "exported").mkdir()
    (root / "exported" / "config.json").write_text('{"earlier": true}\n')
    (root / "broken.yaml").write_text("trainer:\n  max_epochs: 1\n model: [\n")
    torch.save({"when": datetime.date(2026, 1, 1)}, root / "unsafe.ckpt")  # its pickle calls datetime.date

    config = tiny_config(root / "run", backbone="tiny-llava")
    configs = {
        "wrong_type": _set(config, "trainer.max_epochs", "abc"),
        "unknown_key": _set(config, "model.init_args.not_a_key", 1),
        "n_too_deep": _set(config, "model.init_args.n", 9),
        "no_backbone": _set(config, "model.init_args.backbone", str(root / "finetuned_backbone")),
        "bad_draft": _set(config, "model.init_args.draft", "fast"),
        "bad_threshold": _set(config, "model.init_args.confidence_threshold", 2.0),
        "no_data": {**config, "data": {"class_path": "lightning_ssd.data.CocoCaptionDataModule",
                                       "init_args": {"root": str(root / "coco")}}},
    }
    for name, value in configs.items():
        _write_yaml(root / f"{name}.yaml", value)
    _write_yaml(root / "ok.yaml", config)
    return root


GENERATE = ["generate", "--backbone", "tiny-llava", "--draft-head", "{root}/draft", "--images", "{root}/images",
            "--output", "{root}/captions.jsonl"]


def _generate(**flags: str) -> list[str]:
    """`generate` with good flags except those given (flag without '--' and with '_' for '-' -> value)."""
    args = list(GENERATE)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, *([value] if value else [])]
    return args


# (id, command line, text the first line must contain: the flag, file or key as typed); SLOW + (...): a case left to
# the slow run (-m slow), so that the default run stays near two minutes with every kind of input still in it
SLOW = ("slow",)
CASES = [
    ("backbone folder missing", _generate(backbone="{root}/finetuned_backbone"),
     ["--backbone", "{root}/finetuned_backbone"]),
    ("unknown preset", ["bench", "--backbone", "tiny-lava", "--output", "{root}/bench.json"],
     ["--backbone 'tiny-lava'", "did you mean 'tiny-llava'"]),
    ("text file as draft head", _generate(draft_head="{root}/notes.txt"), ["--draft-head {root}/notes.txt"]),
    ("truncated checkpoint", _generate(draft_head="{root}/truncated.ckpt"), ["--draft-head {root}/truncated.ckpt"]),
    ("draft folder without weights", _generate(draft_head="{root}/half_draft"),
     ["--draft-head {root}/half_draft", "model.safetensors"]),
    ("ssd without a draft", ["generate", "--backbone", "tiny-llava", "--images", "{root}/images", "--output",
                             "{root}/captions.jsonl"], ["--draft-head"]),
    ("sampling at temperature 0", _generate(do_sample="", temperature="0"), ["--temperature 0", "--do-sample"]),
    ("top-p above 1", _generate(top_p="1.5"), ["--top-p 1.5"]),
    ("negative max-new-tokens", _generate(max_new_tokens="-3"), ["--max-new-tokens", "-3"]),
    ("draft length not a number", _generate(draft="fast"), ["--draft must be an integer d >= 1", "got 'fast'"]),
    ("output is a folder", _generate(output="{root}/images"), ["--output {root}/images"]),
    ("images folder missing", _generate(images="{root}/photos"), ["--images", "{root}/photos"]),
    SLOW + ("no image in the folder", _generate(images="{root}/no_images"), ["--images", "{root}/no_images"]),
    ("malformed JSONL", _generate(images="{root}/prompts.jsonl"), ["--images", "prompts.jsonl line 2"]),
    ("bench n out of range", ["bench", "--backbone", "tiny-llava", "--n", "99", "--output", "{root}/bench.json"],
     ["--n=99", "[1, 3]"]),
    SLOW + ("bench imitation missing", ["bench", "--backbone", "tiny-llava", "--imitation", "{root}/imit.ckpt",
                                 "--output", "{root}/bench.json"], ["--imitation {root}/imit.ckpt"]),
    ("export-draft of a text file", ["export-draft", "{root}/notes.txt", "{root}/exported"], ["{root}/notes.txt"]),
    ("export-draft of a checkpoint that could run code", ["export-draft", "{root}/unsafe.ckpt", "{root}/exported"],
     ["{root}/unsafe.ckpt", "datetime.date", "--trust"]),
    SLOW + ("export-draft of a damaged checkpoint", ["export-draft", "{root}/whole.ckpt", "{root}/exported"],
            ["{root}/whole.ckpt", "damaged"]),
    ("bench-stream load above 1", ["bench-stream", "--load", "1.5", "--output", "{root}/bench.json"], ["--load 1.5"]),
    ("bench-stream profile without a stream", ["bench-stream", "--num-requests", "0", "--length", "8", "--profile",
                                               "--output", "{root}/bench.json"], ["--profile", "--num-requests"]),
    SLOW + ("bench-stream draft not a number", ["bench-stream", "--draft", "fast", "--output", "{root}/bench.json"],
            ["--draft must be an integer d >= 1", "got 'fast'"]),
    ("serve port below 1024", ["serve", "--backbone", "tiny-llava", "--port", "80"], ["--port", "got 80"]),
    ("negative threads", ["generate", *GENERATE[1:], "--threads", "-1"], ["--threads", "-1"]),
    SLOW + ("reproduce lambda", ["reproduce", "--lambdas", "1/0", "--dry-run"], ["--lambdas", "'1/0'"]),
    ("reproduce judge without its model", ["reproduce", "--judge-url", "http://127.0.0.1:9", "--dry-run"],
     ["--judge-url and --judge-model go together"]),
    SLOW + ("reproduce judge not a URL", ["reproduce", "--judge-url", "judge.local", "--judge-model", "m", "--dry-run"],
            ["--judge-url judge.local", "http://"]),
    ("bench-stream prefill batch of 0", ["bench-stream", "--prefill-batch", "0", "--output", "{root}/bench.json"],
     ["--prefill-batch"]),
    SLOW + ("demo on a folder backbone", ["demo", "--backbone", "{root}/images", "--root", "{root}/demo"],
            ["--backbone"]),
    ("unknown subcommand", ["fitt", "--config", "{root}/ok.yaml"], ["'fitt'"]),
    SLOW + ("config file missing", ["fit", "--config", "{root}/missing.yaml"], ["--config {root}/missing.yaml"]),
    SLOW + ("config not YAML", ["fit", "--config", "{root}/broken.yaml"], ["--config {root}/broken.yaml", "line 3"]),
    ("data root missing", ["fit", "--config", "{root}/no_data.yaml"],
     ["data.init_args.root", "{root}/coco/dataset_coco.json"]),
    ("key of the wrong type", ["fit", "--config", "{root}/wrong_type.yaml"],
     ["trainer.max_epochs in --config {root}/wrong_type.yaml", "'abc'"]),
    SLOW + ("unknown key", ["fit", "--config", "{root}/unknown_key.yaml"], ["model.init_args.not_a_key"]),
    ("n beyond the backbone", ["fit", "--config", "{root}/n_too_deep.yaml"], ["model.init_args.n=9", "[1, 3]"]),
    ("confidence threshold above 1", ["fit", "--config", "{root}/bad_threshold.yaml"],
     ["model.init_args.confidence_threshold", "[0, 1]", "2.0"]),
    SLOW + ("config backbone missing", ["fit", "--config", "{root}/no_backbone.yaml"],
     ["model.init_args.backbone", "{root}/finetuned_backbone"]),
    SLOW + ("draft length in a config", ["fit", "--config", "{root}/bad_draft.yaml"],
            ["model.init_args.draft", "'fast'"]),
    SLOW + ("flag of the wrong type", ["validate", "--config", "{root}/ok.yaml", "--trainer.max_epochs", "x"],
     ["--trainer.max_epochs", "'x'"]),
    ("truncated ckpt_path", ["test", "--config", "{root}/ok.yaml", "--ckpt_path", "{root}/truncated.ckpt"],
     ["--ckpt_path {root}/truncated.ckpt"]),
    ("ckpt_path that could run code", ["test", "--config", "{root}/ok.yaml", "--ckpt_path", "{root}/unsafe.ckpt"],
     ["--ckpt_path {root}/unsafe.ckpt", "datetime.date"]),
    SLOW + ("negative threads in a stage", ["validate", "--config", "{root}/ok.yaml", "--threads", "-1"],
            ["--threads", "-1"]),
]


def _run(args: list[str], root: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [a.format(root=root) for a in args]
    return subprocess.run([sys.executable, "-m", "lightning_ssd", *argv], env={**cli_env(), **(extra_env or {})},
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def _message_lines(stderr: str) -> list[str]:
    """The lines of stderr less tqdm's progress bars (which redraw themselves after carriage returns)."""
    parts = (part for line in stderr.split("\n") for part in line.split("\r"))
    return [part for part in parts if part.strip() and not _PROGRESS.search(part)]


def _digest(root: Path) -> dict[str, str]:
    """Earlier outputs: their bytes must not change when a run fails."""
    files = [root / "captions.jsonl", root / "bench.json", *sorted((root / "exported").iterdir())]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _check_clean_failure(result: subprocess.CompletedProcess, culprits: list[str], root: Path) -> str:
    lines = _message_lines(result.stderr)
    assert result.returncode != 0, result.stdout[-500:]
    assert lines, f"nothing on stderr (exit {result.returncode})"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) <= 2, result.stderr[-3000:]
    for culprit in culprits:
        assert culprit.format(root=root) in lines[0], lines[0]
    return lines[0]


PARAMS = [pytest.param(*c[-2:], id=c[-3], marks=[pytest.mark.slow] if c[0] == "slow" else []) for c in CASES]


@pytest.mark.parametrize(("args", "culprits"), PARAMS)
def test_a_bad_input_is_one_line_naming_it(bad, args, culprits):
    before = _digest(bad)
    result = _run(args, bad)
    first = _check_clean_failure(result, culprits, bad)
    assert first.startswith("lightning_ssd "), first
    assert result.returncode == 2  # a user error, not a crash
    assert _digest(bad) == before


@pytest.fixture(scope="module")
def foreign_draft(bad) -> Path:
    """A draft exported for the tiny-llava preset built from another seed: not the preset a user loads."""
    from lightning_ssd.backbones import load_backbone
    from lightning_ssd.models.checkpoint import save_draft
    from lightning_ssd.models.components.imitation import ImitationNetwork

    vlm = load_backbone("tiny-llava", seed=7)
    return save_draft(ImitationNetwork(vlm.decoder.hidden_size).eval(), 2, vlm, "runs/other/backbone",
                      bad / "foreign_draft")


def test_a_draft_for_another_backbone_names_the_flags_typed(bad, foreign_draft):
    before = _digest(bad)
    result = _run(_generate(draft_head=str(foreign_draft)), bad)
    first = _check_clean_failure(result, [f"--draft-head {foreign_draft}", "'runs/other/backbone'",
                                          "--backbone 'tiny-llava'", "Set --backbone"], bad)
    assert "the given backbone" not in first and "model.init_args" not in first
    assert _digest(bad) == before


def test_unreadable_images_are_each_named_and_nothing_is_written(bad):
    before = _digest(bad)
    result = _run(_generate(images=f"{bad}/broken", mode="greedy"), bad)
    lines = _message_lines(result.stderr)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"skipped {bad}/broken/corrupt.jpg")
    assert f"--images {bad}/broken: no image could be read" in lines[-1]
    assert _digest(bad) == before


@pytest.mark.parametrize(("args", "env"), [
    ([*_generate(top_p="1.5"), "--verbose"], None),
    pytest.param(["fit", "--config", "{root}/no_data.yaml"], {"LIGHTNING_SSD_VERBOSE": "1"}, marks=pytest.mark.slow),
], ids=["--verbose", "LIGHTNING_SSD_VERBOSE"])
def test_verbose_shows_the_traceback_then_the_line(bad, args, env):
    result = _run(args, bad, env)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("lightning_ssd ")


def test_a_bug_keeps_its_traceback_and_its_cause_is_the_last_line(bad, tmp_path):
    """An error that is not the user's (here: a model whose constructor fails, which jsonargparse wraps in "Does not
    validate against any of the Union subtypes") keeps its traceback; its own first line comes last."""
    (tmp_path / "broken_model.py").write_text(
        "from lightning_ssd.models import ImitationModule\n\n\n"
        "class BrokenModel(ImitationModule):\n"
        "    def __init__(self, backbone: str, n: int | None = None, max_new_tokens: int = 4) -> None:\n"
        "        raise KeyError('a bug')\n")
    config = yaml.safe_load((bad / "ok.yaml").read_text())
    config["model"]["class_path"] = "broken_model.BrokenModel"
    path = _write_yaml(tmp_path / "c.yaml", config)
    result = _run(["fit", "--config", path], bad, {"PYTHONPATH": f"{REPO}:{tmp_path}"})
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("lightning_ssd fit: unexpected error, traceback above: "
                                                      "KeyError: 'a bug'")


def test_a_paper_config_without_its_data_reports_the_data_root_first(tmp_path):
    """experiments/coco.yaml run where neither its data nor its backbone exists: the data root is named first."""
    result = subprocess.run([sys.executable, "-m", "lightning_ssd", "fit", "--config", str(REPO / "experiments" /
                             "coco.yaml")], env=cli_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    first = _check_clean_failure(result, ["data.init_args.root 'data/coco'", "data/coco/dataset_coco.json"], tmp_path)
    assert "backbone" not in first and "n=" not in first


def test_a_value_a_constructor_refuses_is_one_line(bad, tmp_path):
    """A ValueError raised by a class built from the config (jsonargparse's "does not validate") is the user's."""
    config = yaml.safe_load((bad / "ok.yaml").read_text())
    config["model"]["init_args"]["imitation"] = {
        "class_path": "lightning_ssd.models.components.imitation.ImitationNetwork", "init_args": {"num_linear": 5}}
    result = _run(["fit", "--config", _write_yaml(tmp_path / "c.yaml", config)], bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = _message_lines(result.stderr)[-1]
    assert last == "lightning_ssd fit: error: imitation num_linear must be 0, 1 or 2, got 5"
