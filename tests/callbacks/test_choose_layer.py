"""The chosen n is written as a config fragment that merges into the next stage's config."""

import pytest
import torch
import yaml

from lightning_ssd.callbacks import ChooseLayerCallback
from lightning_ssd.models import FineTuneModule
from lightning_ssd.models.components.exit_layer import choose_exit_layer
from tests.helpers import make_redundant_
from tests.models.helpers import tiny_data, tiny_trainer


def test_validate_writes_the_argmax_of_the_reward(tmp_path):
    name = "tiny-llava"
    callback = ChooseLayerCallback(output=str(tmp_path / "n.yaml"), lam=0.0)
    trainer = tiny_trainer(tmp_path, callbacks=[callback])
    trainer.validate(FineTuneModule(name, max_new_tokens=2), tiny_data(name))
    text = (tmp_path / "n.yaml").read_text()
    fragment = yaml.safe_load(text)
    rows = [line for line in text.splitlines() if line.startswith("#   l=")]
    confidences = [float(row.split("C_l=")[1].split()[0]) for row in rows]
    assert fragment["model"]["init_args"]["n"] == choose_exit_layer(torch.tensor(confidences), 4, lam=0.0)
    assert trainer.callback_metrics["val/chosen_n"].item() == fragment["model"]["init_args"]["n"]


def test_one_se_rule_writes_the_shallowest_layer_within_a_standard_error_of_the_best(tmp_path):
    name = "tiny-llava"
    callback = ChooseLayerCallback(output=str(tmp_path / "n.yaml"), lam=0.0, rule="one_se")
    trainer = tiny_trainer(tmp_path, callbacks=[callback])
    trainer.validate(FineTuneModule(name, max_new_tokens=2), tiny_data(name, num_val=4))
    text = (tmp_path / "n.yaml").read_text()
    assert "rule=one_se" in text
    rows = [line for line in text.splitlines() if line.startswith("#   l=")]
    gaps = [float(row.split("best - reward = ")[1].split(",")[0]) for row in rows]
    errors = [float(row.split("standard error ")[1].split(")")[0]) for row in rows]
    expected = next(layer for layer, (gap, se) in enumerate(zip(gaps, errors, strict=True), 1) if gap <= se + 5e-5)
    assert yaml.safe_load(text)["model"]["init_args"]["n"] == expected


def test_speedup_rule_writes_the_layer_of_the_highest_predicted_speedup(tmp_path):
    name = "tiny-llava"
    module = FineTuneModule(name, max_new_tokens=2)
    make_redundant_(module.vlm, 1)  # layers 1..L write nothing: layer 1's exit is the full model's
    callback = ChooseLayerCallback(output=str(tmp_path / "n.yaml"), rule="speedup", draft=4)
    tiny_trainer(tmp_path, callbacks=[callback]).validate(module, tiny_data(name))
    text = (tmp_path / "n.yaml").read_text()
    rows = [line for line in text.splitlines() if line.startswith("#   l=")]
    agreement = [float(row.split("agreement ")[1].split(",")[0]) for row in rows]
    predicted = [float(row.split("d=4 ")[1].rstrip("x")) for row in rows]
    assert "rule=speedup" in text and agreement == [1.0, 1.0]
    assert predicted[0] > predicted[1] > 1.0  # full agreement: the shallower exit is the cheaper draft
    assert yaml.safe_load(text)["model"]["init_args"]["n"] == 1


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule must be one of"):
        ChooseLayerCallback(rule="median")
    with pytest.raises(ValueError, match="draft must be >= 1"):
        ChooseLayerCallback(rule="speedup", draft=0)
