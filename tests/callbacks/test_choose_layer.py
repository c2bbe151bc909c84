"""The chosen n is written as a config fragment that merges into the next stage's config."""

import torch
import yaml

from lightning_ssd.callbacks import ChooseLayerCallback
from lightning_ssd.models import FineTuneModule
from lightning_ssd.models.components.exit_layer import choose_exit_layer
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
