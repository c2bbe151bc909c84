import logging
import shlex
from pathlib import Path

import nni
import pytest
from nni.experiment.config import ExperimentConfig

from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.nas import trial as trial_mod
from lightning_ssd.nas.export import RECORD_FILE, load_record
from lightning_ssd.nas.reward import draft_reward
from lightning_ssd.nas.space import load_search_space
from lightning_ssd.nas.trial import TrialSettings, link_for_web_ui, run_trial, settings_parser

NAS = Path(__file__).resolve().parents[2] / "nas"
TINY = TrialSettings(backbone="tiny-llava", n=1, draft=3, num_train=4, num_val=2, batch_size=4, epochs=2,
                     max_new_tokens=6, warmup_steps=1)


@pytest.fixture
def reports(monkeypatch):
    seen: dict[str, list] = {"intermediate": [], "final": []}
    monkeypatch.setattr(nni, "report_intermediate_result", seen["intermediate"].append)
    monkeypatch.setattr(nni, "report_final_result", seen["final"].append)
    return seen


@pytest.mark.parametrize(
    ("params", "trained"),
    [
        ({"num_linear": {"_name": 2, "width_multiplier": 0.5, "activation": "relu"}, "fusion": "concat"}, True),
        # identity network + parameter-free fusion: the plain early exit, validated without training
        ({"num_linear": {"_name": 0}, "norm": "none", "fusion": "average"}, False),
    ],
)
def test_a_trial_trains_reports_and_records(tmp_path, reports, params, trained):
    record = run_trial(params, TINY, tmp_path)
    # one intermediate tau per validation, the final result is the reward of the record
    assert len(reports["intermediate"]) == (TINY.epochs if trained else 1)
    assert all(r["default"] >= 1.0 for r in reports["intermediate"])
    assert reports["final"] == [record.reward]
    assert load_record(tmp_path / RECORD_FILE) == record
    # the reward is the cost model's speedup at the measured alpha and the measured FLOPs
    r = record.reward
    report = record.cost_report
    cost = CostModel(L=4, n=1, A=report["imitation_flops_per_token"] / report["layer_flops_per_token"],
                     H=report["head_flops_per_token"] / report["layer_flops_per_token"])
    assert r["default"] == pytest.approx(draft_reward(cost, r["alpha"], TINY.draft).speedup)
    assert (r["imitation_cost"] > 0) == trained
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_settings_round_trip_through_the_trial_flags():
    settings = TrialSettings(backbone="/some/folder", n=3, lr=3e-4, threads=2)
    assert TrialSettings(**vars(settings_parser().parse_args(settings.to_args()))) == settings


def test_nnictl_config_is_valid_and_its_trial_command_parses():
    config = ExperimentConfig.load(str(NAS / "config.yml"))
    config.validate()
    assert (NAS / config.search_space_file).resolve() == NAS / "search_space.json"
    load_search_space(NAS / config.search_space_file)
    command = shlex.split(config.trial_command)
    assert command[:2] == ["python", "trial.py"]
    settings = TrialSettings(**vars(settings_parser().parse_args(command[2:])))
    assert settings.backbone == "../runs/synthetic/finetune/backbone"  # trials run in nas/
    assert config.tuner.class_args["optimize_mode"] == "maximize"


def test_web_ui_link_joins_the_trial_folder_and_the_folder_the_ui_reads(tmp_path):
    tensorboard = tmp_path / "exp" / "environments" / "local-env" / "trials" / "Ab1" / "tensorboard"
    tensorboard.mkdir(parents=True)
    link_for_web_ui(tensorboard)
    link = tmp_path / "exp" / "trials" / "Ab1" / "output" / "tensorboard"
    assert link.is_symlink() and link.resolve() == tensorboard.resolve()
    link_for_web_ui(tensorboard)  # idempotent


def test_web_ui_link_warns_on_an_unknown_layout(tmp_path, caplog):
    tensorboard = tmp_path / "somewhere" / "tensorboard"
    tensorboard.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger=trial_mod.__name__):
        link_for_web_ui(tensorboard)
    assert "will not find" in caplog.text
    assert not (tmp_path / "trials").exists()
