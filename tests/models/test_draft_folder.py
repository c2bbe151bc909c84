"""A trained draft as a shareable folder: export, reload, and clear errors for anything else."""

import json
from dataclasses import replace

import pytest
import torch

from lightning_ssd.backbones import load_backbone
from lightning_ssd.models import ImitationModule
from lightning_ssd.models.checkpoint import (
    NotACheckpointError,
    export_draft,
    load_draft_spec,
    load_imitation_network,
    save_draft,
)
from lightning_ssd.models.components.fingerprint import BackboneMismatchError
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.tools.export_draft import main as export_main
from tests.models.helpers import tiny_data, tiny_trainer

NAME = "tiny-blip2-opt"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("imitation")
    module = ImitationModule(NAME, n=2, lr=1e-2, warmup_steps=0)
    trainer = tiny_trainer(root, max_steps=2, limit_val_batches=0)
    trainer.fit(module, tiny_data(NAME))
    path = root / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, module.imitation_net


def test_export_then_load_gives_the_trained_network(checkpoint, tmp_path, capsys):
    path, trained = checkpoint
    export_main([str(path), str(tmp_path / "draft")])
    assert "model.safetensors" in capsys.readouterr().out
    config = json.loads((tmp_path / "draft" / "config.json").read_text())
    assert config["format"] == "lightning_ssd-draft" and config["n"] == 2
    assert config["backbone"]["path"] == NAME and config["backbone"]["fingerprint"]["num_layers"] == 4
    vlm = load_backbone(NAME)
    specs = [load_draft_spec(source, vlm, "dynamic", 0.5) for source in (path, tmp_path / "draft")]
    for spec in specs:
        assert (spec.n, spec.draft, spec.confidence_threshold) == (2, "dynamic", 0.5)
        for key, value in trained.state_dict().items():
            torch.testing.assert_close(spec.imitation.state_dict()[key], value, rtol=0, atol=0)
    # the checkpoint and the folder read as the same spec (the networks are equal copies, checked above)
    assert specs[0] == replace(specs[1], imitation=specs[0].imitation)
    assert load_imitation_network(path, vlm).state_dict().keys() == trained.state_dict().keys()


def test_save_draft_round_trips_an_architecture(tmp_path):
    vlm = load_backbone(NAME)
    torch.manual_seed(0)
    net = ImitationNetwork(vlm.decoder.hidden_size, attention=True, num_linear=1, norm="post").eval()
    save_draft(net, 3, vlm, NAME, tmp_path / "d")
    spec = load_draft_spec(tmp_path / "d", vlm)
    loaded = spec.imitation
    assert spec.n == 3 and loaded.attention is not None and loaded.norm_placement == "post"
    x = torch.randn(2, 5, vlm.decoder.hidden_size)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_a_draft_for_another_backbone_is_refused(checkpoint, tmp_path):
    export_draft(checkpoint[0], tmp_path / "draft")
    with pytest.raises(BackboneMismatchError, match="weights: checkpoint"):
        load_imitation_network(tmp_path / "draft", load_backbone(NAME, seed=1))


def test_broken_draft_folders_are_named_in_the_error(checkpoint, tmp_path):
    draft = export_draft(checkpoint[0], tmp_path / "draft")
    weights = (draft / "model.safetensors").read_bytes()
    (draft / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(NotACheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_imitation_network(draft, load_backbone(NAME))
    (draft / "config.json").write_text("{truncated")
    with pytest.raises(NotACheckpointError, match="config.json is not valid JSON"):
        load_imitation_network(draft, load_backbone(NAME))
    (draft / "config.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(NotACheckpointError, match="not a lightning_ssd draft config"):
        load_imitation_network(draft, load_backbone(NAME))
    (draft / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_imitation_network(draft, load_backbone(NAME))


def test_a_failed_export_leaves_the_earlier_folder_whole(checkpoint, tmp_path):
    draft = export_draft(checkpoint[0], tmp_path / "draft")
    before = {p.name: p.read_bytes() for p in draft.iterdir()}
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(NotACheckpointError, match="garbage.ckpt is not a checkpoint"):
        export_draft(garbage, draft)
    assert {p.name: p.read_bytes() for p in draft.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["draft", "garbage.ckpt"]  # no staging folder left
