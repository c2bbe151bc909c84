"""A Qwen2.5-VL checkpoint folder loads without torchvision and decodes losslessly from the processor's outputs."""

import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from lightning_ssd.backbones import CheckpointError, load_backbone, load_processor
from lightning_ssd.backbones.tokenizer import preset_tokenizer
from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.decoding.engine import SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.spec import DraftSpec
from tests.helpers import chaotic_

SPECIAL = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen")
    tokenizer = preset_tokenizer(padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    text = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=len(tokenizer), tie_word_embeddings=False,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=[ids["<|im_end|>"], tokenizer.eos_token_id])
    vision = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    chaotic_(SplitVLM(model), std=0.15)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], tokenizer.eos_token_id]  # two end ids, as Instruct
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(path)
    return path


def test_folder_loads_and_ssd_equals_generate_on_processor_outputs(folder):
    vlm, processor = load_backbone(str(folder)), load_processor(str(folder))
    assert vlm.family == "qwen2.5-vl" and vlm.eos_token_id == [processor.tokenizer.convert_tokens_to_ids(
        "<|im_end|>"), processor.tokenizer.eos_token_id]
    g = torch.Generator().manual_seed(0)
    images = [Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy())
              for w, h in ((56, 56), (112, 84))]
    prompts = ["<|vision_start|><|image_pad|><|vision_end|>describe the image .",
               "<|vision_start|><|image_pad|><|vision_end|>what is on the left ?"]
    inputs = processor(images=images, text=prompts, padding=True, return_tensors="pt")
    assert inputs["mm_token_type_ids"].sum(-1).tolist() == [4, 12]  # one placeholder per merged patch
    with torch.no_grad():
        reference = vlm.model.generate(**inputs, do_sample=False, max_new_tokens=10)[:, inputs["input_ids"].shape[1]:]
    out = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2), vlm.eos_token_id), **inputs,
                   max_new_tokens=10)
    assert torch.equal(out.padded(vlm.pad_token_id), reference)
    assert len({t for row in reference.tolist() for t in row}) >= 4


def test_more_placeholders_than_images_is_an_error(folder):
    processor = load_processor(str(folder))
    with pytest.raises(ValueError, match="more <\\|image_pad\\|> placeholders than images"):
        processor(images=[Image.new("RGB", (56, 56))], text=["<|image_pad|> <|image_pad|>"], return_tensors="pt")


def test_an_unsupported_model_type_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_vl"}')
    with pytest.raises(CheckpointError, match="'blip-2' .*'llava', 'llava_next', 'qwen2_5_vl'"):
        load_backbone(str(tmp_path))
