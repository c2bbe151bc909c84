"""`--threads` on every command, and the rule for its default."""

import argparse

import pytest
import torch

import lightning_ssd.threads as threads_module
from lightning_ssd.__main__ import main
from lightning_ssd.cli import cli_main
from lightning_ssd.threads import add_threads_argument, default_threads, set_threads
from tests.models.helpers import tiny_config, write_config

TOOLS = ["generate", "bench", "bench-stream", "serve", "demo", "choose-n", "export-draft", "reproduce"]
STAGES = ["fit", "validate", "test", "predict"]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("cores", "load", "expected"), [
    (2, 0.0, 1),  # measured: one thread decodes faster than two on a quiet 2-core machine
    (2, 1.5, 1),  # and two collapse beside another job
    (1, 0.0, 1),
    (16, 0.0, 8),
    (16, 11.2, 4),  # 12 of 16 cores busy: no more threads than free cores
    (16, 40.0, 1),
])
def test_default_is_half_the_free_cores_and_at_least_one(cores, load, expected):
    assert default_threads(cores, load) == expected


def test_set_threads_applies_a_count_and_zero_leaves_it(restore_threads):
    assert set_threads(2) == 2 == torch.get_num_threads()
    assert set_threads(0) == 2
    assert set_threads(1) == 1 == torch.get_num_threads()


def test_no_flag_applies_the_rule_unless_omp_num_threads_is_set(restore_threads, monkeypatch):
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 6)
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert set_threads(None) == 3
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads(None) == 2  # the user's environment wins over the rule


def test_a_negative_count_is_refused_naming_the_flag():
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    assert parser.parse_args(["--threads", "3"]).threads == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "-1"])
    with pytest.raises(ValueError, match="--threads"):
        set_threads(-1)


@pytest.mark.parametrize("command", TOOLS + STAGES)
def test_every_command_lists_threads_in_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--threads" in capsys.readouterr().out


def test_the_lightning_cli_sets_threads_before_building_the_model(tmp_path, restore_threads):
    torch.set_num_threads(1)
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path))
    cli = cli_main(["--config", str(path), "--threads", "2"], run=False)
    assert torch.get_num_threads() == 2 and cli.config.threads == 2
