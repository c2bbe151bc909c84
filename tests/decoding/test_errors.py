import json

import pytest

from lightning_ssd.backbones import CheckpointError, load_backbone, load_processor, save_backbone
from lightning_ssd.decoding.engine import DraftOnlyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import make_inputs, tiny_vlm


@pytest.fixture(scope="module")
def vlm():
    return tiny_vlm("tiny-llava")


@pytest.mark.parametrize("n", [0, 4, 7, -1])
def test_exit_layer_out_of_range(vlm, n):
    with pytest.raises(ValueError, match=rf"^n={n}: the draft exit layer must be in \[1, L-1\] = \[1, 3\]"):
        SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n))
    with pytest.raises(ValueError, match="exit layer must be in"):
        DraftOnlyDecoder(vlm.decoder, DraftSpec(n))


@pytest.mark.parametrize("d", [0, -2])
def test_draft_length_below_one(vlm, d):
    with pytest.raises(ValueError, match="d must be >= 1"):
        SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2, draft=d))


def test_imitation_width_mismatch(vlm):
    with pytest.raises(ValueError, match="imitation network width 32 does not match the backbone hidden size 64"):
        SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2, ImitationNetwork(32)))


def test_max_new_tokens_below_one(vlm):
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2)), **make_inputs("tiny-llava", [3]),
                 max_new_tokens=0)


def test_wrong_number_of_image_placeholders(vlm):
    batch = make_inputs("tiny-llava", [3])
    batch["input_ids"][0, -1] = 3  # one image token too many
    with pytest.raises(ValueError, match="image placeholder tokens"):
        generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2)), **batch, max_new_tokens=2)


def test_unknown_preset_or_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="neither a preset"):
        load_backbone(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_backbone(str(tmp_path))


def test_folder_of_another_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="model_type 'bert' is not a supported VLM"):
        load_processor(str(tmp_path))


def test_corrupt_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_backbone(str(tmp_path))


def test_tokenizer_without_image_token(tmp_path):
    name = "tiny-blip2-opt"
    vlm, processor = load_backbone(name), load_processor(name)
    folder = save_backbone(vlm, processor, tmp_path / "ckpt")
    vocab_file = folder / "tokenizer.json"
    spec = json.loads(vocab_file.read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<image>"]
    spec["model"]["vocab"].pop("<image>", None)
    vocab_file.write_text(json.dumps(spec))
    for extra in ("tokenizer_config.json", "special_tokens_map.json", "processor_config.json"):
        path = folder / extra
        if path.exists():
            text = path.read_text().replace('"<image>"', '"<unk>"')
            path.write_text(text)
    with pytest.raises(CheckpointError, match="image token"):
        load_processor(str(folder))


def test_save_is_atomic_and_keeps_the_old_folder_on_failure(tmp_path, monkeypatch):
    vlm, processor = load_backbone("tiny-llava"), load_processor("tiny-llava")
    folder = save_backbone(vlm, processor, tmp_path / "ckpt")
    before = sorted(p.name for p in folder.iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(processor), "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        save_backbone(vlm, processor, folder)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folder left behind


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_confidence_threshold_outside_0_1_is_refused(vlm, threshold):
    with pytest.raises(ValueError, match="confidence_threshold"):
        SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2, confidence_threshold=threshold))


@pytest.mark.parametrize("content", [b"not a checkpoint at all\n", b"PK\x03\x04truncated zip"])
def test_a_file_that_is_not_a_checkpoint_is_named_in_the_error(vlm, tmp_path, content):
    from lightning_ssd.models.checkpoint import NotACheckpointError, load_imitation_network

    path = tmp_path / "draft.ckpt"
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError, match=f"{path} is not a checkpoint"):
        load_imitation_network(path, vlm)


def test_a_checkpoint_of_another_kind_is_named_in_the_error(vlm, tmp_path):
    import torch

    from lightning_ssd.models.checkpoint import NotACheckpointError, load_imitation_network

    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(NotACheckpointError, match=f"{path} is not an imitation-stage checkpoint"):
        load_imitation_network(path, vlm)


def test_images_and_prompts_of_different_batch_sizes(vlm):
    batch = make_inputs("tiny-llava", [3, 5])
    with pytest.raises(ValueError, match="pixel_values holds 1 images but input_ids 2 prompts"):
        generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2)), batch["pixel_values"][:1], batch["input_ids"],
                 batch["attention_mask"], max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2)), batch["pixel_values"], batch["input_ids"],
                 batch["attention_mask"][:, 1:], max_new_tokens=2)


def test_a_generator_on_another_device_is_refused(vlm):
    from types import SimpleNamespace

    import torch
    from transformers import GenerationConfig

    on_gpu = SimpleNamespace(device=torch.device("cuda", 0))  # what a CUDA generator reports; no GPU needed
    with pytest.raises(ValueError, match=r"generator is on cuda:0 but the model is on cpu.*torch.Generator"):
        generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2)), **make_inputs("tiny-llava", [3]),
                 max_new_tokens=2, generation_config=GenerationConfig(do_sample=True), generator=on_gpu)


@pytest.mark.parametrize(("settings", "message"), [({"do_sample": True, "temperature": 0.0}, "temperature"),
                                                   ({"do_sample": True, "top_p": 1.2}, "top_p"),
                                                   ({"do_sample": True, "top_k": -3}, "top_k"),
                                                   ({"num_beams": 3}, "num_beams=3")])
def test_impossible_generation_settings_are_refused_by_generate(vlm, settings, message):
    from transformers import GenerationConfig

    config = GenerationConfig()
    for key, value in settings.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=message):
        generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2)), **make_inputs("tiny-llava", [3]),
                 max_new_tokens=2, generation_config=config)
