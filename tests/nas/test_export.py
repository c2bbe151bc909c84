import json
import os
from pathlib import Path

import pytest
import yaml

from lightning_ssd.cli import cli_main
from lightning_ssd.models.components.fusion import AverageFusion
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.models.imitation import ImitationModule
from lightning_ssd.nas.export import (
    RECORD_FILE,
    TrialRecord,
    atomic_write,
    best_record,
    fragment,
    load_record,
    save_record,
    write_fragment,
)
from lightning_ssd.nas.space import architecture_from_params

REPO = Path(__file__).resolve().parents[2]


def make_record(score: float, trial_id: str = "t0", **params) -> TrialRecord:
    arch = architecture_from_params(params)
    return TrialRecord(
        experiment_id="exp", trial_id=trial_id, params=params, backbone="tiny-llava", n=1, draft=3,
        imitation=arch.imitation, fusion=arch.fusion,
        reward={"default": score, "speedup": score, "alpha": 0.5, "imitation_cost": 0.1}, tau=2.0, cost_report={},
    )


def test_fragment_pins_the_whole_architecture():
    record = make_record(1.5, num_linear={"_name": 1}, norm="post", fusion="average")
    model = fragment(record)["model"]
    assert model["class_path"] == "lightning_ssd.models.ImitationModule"
    args = model["init_args"]
    assert (args["backbone"], args["n"], args["draft"], args["fusion"]) == ("tiny-llava", 1, 3, "average")
    assert args["imitation"]["class_path"] == "lightning_ssd.models.components.imitation.ImitationNetwork"
    assert args["imitation"]["init_args"] == record.imitation
    assert {"residual", "num_heads", "dropout"} <= set(record.imitation)  # defaults written out, not implied


def written(tmp_path: Path) -> tuple[TrialRecord, Path]:
    record = make_record(1.5, num_linear={"_name": 1}, norm="post", fusion="average")
    return record, write_fragment(record, tmp_path / "out" / "best.yaml")


def check_architecture(model: ImitationModule) -> None:
    net = model.imitation_net
    assert isinstance(net, ImitationNetwork)
    assert len(net.mlp) == 1 and net.norm_placement == "post"
    assert isinstance(model.objective.fusion, AverageFusion)
    assert (model.n, model.draft) == (1, 3)


def test_the_cli_builds_the_exported_architecture(tmp_path, monkeypatch):
    _, path = written(tmp_path)
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["--config", str(path), "--data", "lightning_ssd.data.SyntheticDataModule",
                    "--data.init_args.num_train", "4", "--data.init_args.num_val", "2"], run=False)
    check_architecture(cli.model)
    assert cli.datamodule.backbone == "tiny-llava"


def test_the_fragment_overrides_the_architecture_of_the_imitation_experiment(tmp_path, monkeypatch):
    _, path = written(tmp_path)
    base = REPO / "experiments" / "synthetic.yaml"
    base_args = yaml.safe_load(base.read_text())["model"]["init_args"]
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["--config", str(base), "--config", str(path)], run=False)
    check_architecture(cli.model)
    # what the fragment leaves alone stays the experiment's
    assert cli.model.hparams.lr == base_args["lr"]
    assert cli.model.max_new_tokens == base_args["max_new_tokens"]
    assert (cli.model.target_cache is not None) == base_args["cache_targets"]


def test_fragment_file_is_yaml_with_provenance(tmp_path):
    record, path = written(tmp_path)
    text = path.read_text()
    assert "experiment exp (trial t0)" in text and "1.500x" in text
    assert yaml.safe_load(text) == fragment(record)
    assert os.listdir(path.parent) == ["best.yaml"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "best.yaml"
    atomic_write(path, "old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["best.yaml"]


def test_best_record_is_the_highest_reward_anywhere_under_the_experiment(tmp_path):
    for i, score in enumerate([1.2, 1.9, 0.7]):
        save_record(make_record(score, trial_id=f"t{i}"), tmp_path / "environments" / "local-env" / "trials" / f"t{i}")
    (tmp_path / "trials" / "t3").mkdir(parents=True)  # a failed trial: no record
    best = best_record(tmp_path)
    assert (best.trial_id, best.score) == ("t1", 1.9)
    assert load_record(tmp_path / "environments" / "local-env" / "trials" / "t1" / RECORD_FILE) == best


def test_an_experiment_without_a_finished_trial_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no {RECORD_FILE} under {tmp_path}"):
        best_record(tmp_path)


def test_a_foreign_record_is_named(tmp_path):
    path = tmp_path / RECORD_FILE
    path.write_text(json.dumps({"reward": 1.0}))
    with pytest.raises(ValueError, match=str(path)):
        load_record(path)
