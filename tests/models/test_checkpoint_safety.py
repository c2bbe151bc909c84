"""Reading a shared imitation checkpoint: weights only, never code; files that are no checkpoint named as such."""

import builtins
import fractions
from pathlib import Path

import pytest
import torch

from lightning_ssd.backbones import load_backbone
from lightning_ssd.backbones.vlm import vision_inputs
from lightning_ssd.cli import cli_main
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.checkpoint import (
    NotACheckpointError,
    UnsafeCheckpointError,
    export_draft,
    load_draft_spec,
    load_imitation_network,
)
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.tools.export_draft import main as export_main
from tests.models.helpers import tiny_config, tiny_data, write_config

NAME = "tiny-blip2-opt"


class _Payload:
    """Unpickling this runs `exec`, which writes a marker file: what a malicious shared .ckpt would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A genuine imitation-stage checkpoint, as the CLI's ModelCheckpoint writes it (optimizer, loops, callbacks)."""
    root = tmp_path_factory.mktemp("imitation")
    config = tiny_config(root, max_steps=2, limit_val_batches=0)
    cli_main(["fit", "--config", str(write_config(root / "im.yaml", config))])
    return root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def vlm():
    return load_backbone(NAME)


def _tampered(checkpoint: Path, path: Path, **hyper_parameters) -> Path:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file: trusted
    ckpt["hyper_parameters"].update(hyper_parameters)
    torch.save(ckpt, path)
    return path


def _ssd_tokens(vlm, imitation):
    data = tiny_data(NAME)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    decoder = build_decoder("ssd", vlm.decoder, vlm.eos_token_id, DraftSpec(2, imitation, 3))
    out = generate(vlm, decoder, input_ids=batch["prompt_input_ids"], attention_mask=batch["prompt_attention_mask"],
                   max_new_tokens=8, **vision_inputs(batch))
    return out.tokens, [[c.accepted for c in seq.cycles] for seq in out.sequences]


def test_a_checkpoint_whose_pickle_runs_code_is_refused(checkpoint, vlm, tmp_path):
    marker = tmp_path / "marker"
    evil = _tampered(checkpoint, tmp_path / "shared.ckpt", note=_Payload(marker))
    for load in (lambda: load_imitation_network(evil, vlm), lambda: export_draft(evil, tmp_path / "draft")):
        with pytest.raises(UnsafeCheckpointError, match=f"{evil} needs more than weights to load.*builtins.exec"
                                                        ".*export-draft"):
            load()
        assert not marker.exists()
    assert not (tmp_path / "draft").exists()


def test_a_genuine_checkpoint_loads_weights_only_and_decodes_as_before(checkpoint, vlm, monkeypatch):
    trusted = torch.load(checkpoint, map_location="cpu", weights_only=False)
    reference = ImitationNetwork(vlm.decoder.hidden_size)
    reference.load_state_dict({k.removeprefix("imitation_net."): v for k, v in trusted["state_dict"].items()
                               if k.startswith("imitation_net.")})
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw.get("weights_only")) or real_load(*a, **kw))
    spec = load_draft_spec(checkpoint, vlm)
    net = spec.imitation
    assert calls == [True]
    assert spec.n == trusted["backbone"]["n"] == 2
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value, rtol=0, atol=0)
    assert _ssd_tokens(vlm, net) == _ssd_tokens(vlm, reference.eval())


def test_a_path_in_the_hyperparameters_is_allowed(checkpoint, vlm, tmp_path):
    # save_hyperparameters keeps a module's arguments as given: a Path from Python code is pickled as a PosixPath
    path = _tampered(checkpoint, tmp_path / "with_path.ckpt", export_dir=Path("runs/backbone"))
    assert load_draft_spec(path, vlm).n == 2


def test_export_draft_trusts_a_checkpoint_only_when_told(checkpoint, vlm, tmp_path, capsys):
    path = _tampered(checkpoint, tmp_path / "old.ckpt", note=fractions.Fraction(1, 3))
    with pytest.raises(UnsafeCheckpointError, match=r"fractions\.Fraction.*--trust"):
        export_main([str(path), str(tmp_path / "draft")])
    export_main(["--trust", str(path), str(tmp_path / "draft")])
    assert load_draft_spec(tmp_path / "draft", vlm).n == 2


@pytest.mark.parametrize("kind", ["text", "truncated", "empty"])
def test_a_file_that_is_not_a_checkpoint_gets_its_own_error(checkpoint, vlm, tmp_path, kind):
    path = tmp_path / "draft.ckpt"
    data = checkpoint.read_bytes()
    path.write_bytes({"text": b"runs/demo/imitation/checkpoints/last.ckpt\n", "truncated": data[: len(data) // 2],
                      "empty": b""}[kind])
    with pytest.raises(NotACheckpointError, match=f"{path} is not a checkpoint"):
        load_imitation_network(path, vlm)
