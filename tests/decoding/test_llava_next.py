"""LLaVA-NeXT (any-resolution tiling: a different number of image tokens per image) decodes losslessly, from a
checkpoint folder and the processor's outputs (`image_sizes`), against transformers' own generate, in a batch and
through the continuous-batching engine."""

import pytest
import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
)
from transformers.models.llava_next import LlavaNextImageProcessorPil

from lightning_ssd.backbones import load_backbone, load_processor
from lightning_ssd.backbones.tokenizer import preset_tokenizer
from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.decoding.continuous import ContinuousEngine, Request
from lightning_ssd.decoding.drafters import ShallowDrafter
from lightning_ssd.decoding.engine import GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import chaotic_

PINPOINTS = [[32, 64], [64, 32], [64, 64]]
MAX_NEW = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava_next")
    tokenizer = preset_tokenizer(padding_side="left")
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                 image_grid_pinpoints=PINPOINTS)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", image_token="<image>",
                                   num_additional_image_tokens=1)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    config = LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="default",
                             vision_feature_layer=-2)
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config).eval()
    chaotic_(SplitVLM(model), std=0.15)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    vlm, processor = load_backbone(str(folder)), load_processor(str(folder))  # references from the saved folder
    g = torch.Generator().manual_seed(0)
    images = [Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy())
              for w, h in ((32, 32), (64, 40))]
    prompts = ["USER: <image>\ndescribe it . ASSISTANT:", "USER: <image>\nwhat is on the left ? ASSISTANT:"]
    inputs = dict(processor(images=images, text=prompts, padding=True, return_tensors="pt"))
    with torch.no_grad():
        ref = vlm.model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW)[:, inputs["input_ids"].shape[1]:]
    return vlm, inputs, ref


def test_rows_carry_different_numbers_of_image_tokens_and_the_reference_varies(setup):
    vlm, inputs, ref = setup
    counts = (inputs["input_ids"] == vlm.image_token_id).sum(-1).tolist()
    assert vlm.family == "llava-next" and counts[0] != counts[1]
    assert all(len(set(row.tolist())) >= 4 for row in ref), ref


def test_plain_greedy_matches_generate(setup):
    vlm, inputs, ref = setup
    out = generate(vlm, GreedyDecoder(vlm.decoder, vlm.eos_token_id), **inputs, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)


@pytest.mark.parametrize("draft", [1, 4, "dynamic"])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("imitation", ["none", "random", "random-attention"])
def test_ssd_matches_generate(setup, draft, n, imitation):
    vlm, inputs, ref = setup
    net = None
    if imitation != "none":
        torch.manual_seed(1)
        net = ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=imitation.endswith("attention"))
        net.eval()
    out = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, net, draft), vlm.eos_token_id), **inputs,
                   max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert out.drafted > 0


def test_eos_and_the_length_cap_inside_a_draft(setup):
    vlm, inputs, ref = setup
    row = ref[1].tolist()
    eos = next(t for i, t in enumerate(row) if 3 <= i and t not in row[:i])  # first emitted mid-sequence
    with torch.no_grad():
        expected = vlm.model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos)
    expected = expected[:, inputs["input_ids"].shape[1]:]
    out = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2), [eos]), **inputs, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), expected)
    for max_new in (1, 2, 6):
        decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(1), vlm.eos_token_id)
        out = generate(vlm, decoder, **inputs, max_new_tokens=max_new)
        assert torch.equal(out.padded(vlm.pad_token_id), ref[:, :max_new])


def test_missing_image_sizes_is_a_clear_error(setup):
    vlm, inputs, _ = setup
    with pytest.raises(ValueError, match="needs image_sizes"):
        generate(vlm, GreedyDecoder(vlm.decoder, vlm.eos_token_id), inputs["pixel_values"], inputs["input_ids"],
                 inputs["attention_mask"], max_new_tokens=2)


@pytest.mark.parametrize("n", [None, 2])
def test_continuous_engine_equals_generate_for_each_request_alone(setup, n):
    vlm, inputs, _ = setup
    requests, refs = [], []
    for row in range(inputs["input_ids"].shape[0]):
        keep = inputs["attention_mask"][row].bool()
        alone = {"pixel_values": inputs["pixel_values"][row : row + 1],
                 "image_sizes": inputs["image_sizes"][row : row + 1],
                 "input_ids": inputs["input_ids"][row : row + 1, keep]}
        with torch.no_grad():
            out = vlm.model.generate(**alone, attention_mask=torch.ones_like(alone["input_ids"]), do_sample=False,
                                     max_new_tokens=MAX_NEW)
        refs.append(out[0, alone["input_ids"].shape[1]:].tolist())
        requests.append(Request(alone, MAX_NEW))
    drafter = None
    if n is not None:
        torch.manual_seed(1)
        net = ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=True).eval()
        drafter = ShallowDrafter(vlm.decoder, DraftSpec(n, net), vlm.eos_token_id)
    results = ContinuousEngine(vlm, drafter, 4, max_rows=1, max_slots=256).run(requests)
    eos = set(vlm.eos_token_id)
    refs = [ref[: next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))] for ref in refs]
    assert [list(r.tokens) for r in results] == refs
