"""The command line: help, clear errors, linked arguments, forced callbacks, stage composition and resume."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_ssd.backbones import CheckpointError, load_backbone, load_processor, save_backbone
from lightning_ssd.callbacks import FiniteLossGuard
from lightning_ssd.cli import cli_main
from lightning_ssd.errors import UsageError
from lightning_ssd.models.components.fingerprint import BackboneMismatchError
from tests.models.helpers import cli_env, runner, tiny_config, write_config


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster than two on a shared 2-core machine
    yield
    torch.set_num_threads(before)


def test_help_prints_the_module_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--model.help", "ImitationModule"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.fusion" in out and "draft exit layer" in out and "--model.draft" in out  # with docstrings


@pytest.mark.parametrize(("where", "key"), [("model", "init_args.not_a_key"), ("trainer", "max_epoch"), ("", "trainr")])
def test_unknown_config_key_is_a_clear_error(tmp_path, where, key):
    config = tiny_config(tmp_path)
    section = config[where] if where else config
    *parents, leaf = key.split(".")
    for parent in parents:
        section = section[parent]
    section[leaf] = 1
    path = write_config(tmp_path / "bad.yaml", config)
    typed = f"{where}.{key}" if where else key  # the whole key, and the file that set it
    with pytest.raises(UsageError, match=re.escape(f"{typed} in --config {path}: no such option")):
        cli_main(["fit", "--config", str(path), "--print_config"])


def test_backbone_is_linked_and_forced_callbacks_are_added(tmp_path):
    config = tiny_config(tmp_path, backbone="tiny-llava")
    config["checkpoint"] = {"every_n_train_steps": 3}
    path = write_config(tmp_path / "c.yaml", config)
    cli = cli_main(["--config", str(path)], run=False)
    assert cli.datamodule.backbone == "tiny-llava" == cli.model.hparams.backbone
    checkpoints = [cb for cb in cli.trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    assert len(checkpoints) == 1 and checkpoints[0].save_last is True
    assert checkpoints[0].dirpath == str(tmp_path / "checkpoints") and checkpoints[0]._every_n_train_steps == 3
    assert any(isinstance(cb, FiniteLossGuard) for cb in cli.trainer.callbacks)


def test_omegaconf_interpolation(tmp_path):
    config = tiny_config(tmp_path)
    config["checkpoint"] = {"dirpath": "${trainer.default_root_dir}/elsewhere"}
    config["model"]["init_args"]["max_new_tokens"] = "${data.init_args.num_train}"
    cli = cli_main(["--config", str(write_config(tmp_path / "c.yaml", config))], run=False)
    assert cli.trainer.checkpoint_callback.dirpath == str(tmp_path / "elsewhere")
    assert cli.model.max_new_tokens == 4


def test_stages_compose_and_a_changed_backbone_is_refused(tmp_path):
    finetune = tiny_config(tmp_path / "ft", module="FineTuneModule", max_steps=2, limit_val_batches=0,
                           model_args={"export_dir": str(tmp_path / "backbone")})
    cli_main(["fit", "--config", str(write_config(tmp_path / "ft.yaml", finetune))])
    backbone = str(tmp_path / "backbone")
    assert (tmp_path / "backbone" / "config.json").is_file()

    imitation = tiny_config(tmp_path / "im", backbone=backbone, max_steps=2, limit_val_batches=0)
    cli_main(["fit", "--config", str(write_config(tmp_path / "im.yaml", imitation))])
    ckpt = tmp_path / "im" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["backbone"]["path"] == backbone

    test = tiny_config(tmp_path / "test", backbone=backbone, model_args={"n": 1})  # n comes from the checkpoint
    test_path = write_config(tmp_path / "test.yaml", test)
    cli = cli_main(["test", "--config", str(test_path), "--ckpt_path", str(ckpt)])
    assert cli.model.n == 2 and cli.trainer.callback_metrics["test/ssd_identical"].item() == 1.0

    # the fine-tune stage is rerun with another result: the imitation checkpoint no longer fits its backbone
    save_backbone(load_backbone("tiny-blip2-opt", seed=7), load_processor(backbone), backbone)
    with pytest.raises(BackboneMismatchError, match="weights: checkpoint"):
        cli_main(["test", "--config", str(test_path), "--ckpt_path", str(ckpt)])


@pytest.fixture(scope="module")
def trained_elsewhere(tmp_path_factory):
    """An imitation checkpoint trained as the shipped configs do: from its project folder, on a backbone folder
    named by a relative path."""
    project = tmp_path_factory.mktemp("project")
    save_backbone(load_backbone("tiny-blip2-opt"), load_processor("tiny-blip2-opt"), project / "backbone")
    config = tiny_config(Path("im"), backbone="backbone", max_steps=2, limit_val_batches=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        cli_main(["fit", "--config", str(write_config(project / "im.yaml", config))])
    return project, project / "im" / "checkpoints" / "last.ckpt"


def test_a_checkpoint_predicts_from_another_directory(trained_elsewhere, tmp_path, monkeypatch):
    project, ckpt = trained_elsewhere
    monkeypatch.chdir(tmp_path)
    # the config names the backbone relative to the project, as experiments/synthetic/ssd_test.yaml does
    config = write_config(tmp_path / "predict.yaml", tiny_config(Path("out"), backbone="backbone"))
    cli = cli_main(["predict", "--config", str(config), "--ckpt_path", str(ckpt)])
    assert cli.model.hparams.backbone == str(project / "backbone") == cli.datamodule.backbone
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["tokens"] for row in rows)


def test_a_backbone_typed_on_the_command_line_wins_over_the_checkpoint(trained_elsewhere, tmp_path, monkeypatch):
    project, ckpt = trained_elsewhere
    monkeypatch.chdir(project)
    moved = shutil.copytree(project / "backbone", tmp_path / "moved")
    config = write_config(tmp_path / "predict.yaml", tiny_config(tmp_path / "out", backbone="backbone"))
    for flag in ("--model.init_args.backbone", "--model.backbone"):
        cli = cli_main(["predict", "--config", str(config), "--ckpt_path", str(ckpt), flag, str(moved)])
        assert cli.model.hparams.backbone == str(moved) == cli.datamodule.backbone
    # the typed backbone is the one checked against the checkpoint
    save_backbone(load_backbone("tiny-blip2-opt", seed=7), load_processor("tiny-blip2-opt"), tmp_path / "other")
    with pytest.raises(BackboneMismatchError, match="weights: checkpoint"):
        cli_main(["predict", "--config", str(config), "--ckpt_path", str(ckpt),
                  f"--model.init_args.backbone={tmp_path / 'other'}"])


def test_a_checkpoint_that_recorded_a_relative_backbone_says_what_to_type(trained_elsewhere, tmp_path, monkeypatch):
    project, ckpt = trained_elsewhere
    old = torch.load(ckpt, map_location="cpu", weights_only=True)
    old["hyper_parameters"]["backbone"] = old["backbone"]["path"] = "backbone"  # as checkpoints written before
    torch.save(old, tmp_path / "old.ckpt")
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "predict.yaml", tiny_config(Path("out"), backbone="backbone"))
    with pytest.raises(CheckpointError, match=r"old\.ckpt: its backbone 'backbone' is neither a preset nor a folder "
                                              r"here .*--model.init_args.backbone PATH"):
        cli_main(["predict", "--config", str(config), "--ckpt_path", str(tmp_path / "old.ckpt")])
    cli = cli_main(["predict", "--config", str(config), "--ckpt_path", str(tmp_path / "old.ckpt"),
                    "--model.init_args.backbone", str(project / "backbone")])
    assert cli.model.hparams.backbone == str(project / "backbone")


def _global_step(path):
    return torch.load(path, weights_only=False, map_location="cpu")["global_step"]


def test_resume_after_kill_continues_the_global_step(tmp_path):
    config = tiny_config(tmp_path, max_steps=100_000, max_epochs=None, limit_val_batches=0, log_every_n_steps=1,
                         data_args={"num_train": 64})
    config["checkpoint"] = {"every_n_train_steps": 2}
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(tmp_path)}}
    path = write_config(tmp_path / "c.yaml", config)
    last = tmp_path / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([*runner(tmp_path), "fit", "--config", str(path)], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file() and _global_step(last) >= 6:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = _global_step(last)
    assert killed_at >= 6

    resumed = subprocess.run([*runner(tmp_path), "fit", "--config", str(path), "--ckpt_path", "last",
                              "--trainer.max_steps", str(killed_at + 4)],
                             env=cli_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _global_step(last) == killed_at + 4
    metrics = sorted(tmp_path.glob("lightning_logs/version_*/metrics.csv"))[-1].read_text().splitlines()
    steps = [int(row.split(",")[metrics[0].split(",").index("step")]) for row in metrics[1:]]
    assert min(steps) >= killed_at  # the second run started where the first stopped, not at step 0


def test_print_config_of_a_run_is_reusable(tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path))
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(path), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"]["save_last"] is True
    again = write_config(tmp_path / "again.yaml", printed)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(again), "--print_config"])
    assert exit_info.value.code == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]])
def test_top_level_help_lists_every_subcommand(capsys, argv):
    from lightning_ssd.__main__ import _TOOLS, main

    main(argv)
    out = capsys.readouterr().out
    listing = out.split("subcommands:")[1].strip("\n").splitlines()
    listed = {line.split()[0] for line in listing if line.startswith("  ")}
    assert listed == {"fit", "validate", "test", "predict", *_TOOLS}


def test_default_logger_is_tensorboard_without_the_placeholder_hp_metric(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    config = tiny_config(tmp_path)
    config["trainer"].pop("logger", None)
    cli = cli_main(["--config", str(write_config(tmp_path / "c.yaml", config))], run=False)
    assert isinstance(cli.trainer.logger, TensorBoardLogger) and cli.trainer.logger._default_hp_metric is False
    assert cli.trainer.logger.save_dir == str(tmp_path)
    config["trainer"]["logger"] = False
    assert cli_main(["--config", str(write_config(tmp_path / "off.yaml", config))], run=False).trainer.logger is None
