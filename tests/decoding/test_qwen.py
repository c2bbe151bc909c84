"""Qwen2.5-VL (M-RoPE, GQA, untied head, dynamic image sizes) decodes losslessly through the same engine.

A tiny random Qwen2.5-VL built from a config; images of two sizes (so the two rows carry different numbers of image
tokens) and prompts of different lengths in one left-padded batch; the reference is transformers' own generate on
the same batch, given the processor's outputs (`image_grid_thw`, `mm_token_type_ids`).
"""

import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.decoding.engine import GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import chaotic_

V, PAD, BOS, EOS, IMAGE, START, END, VIDEO = 96, 0, 1, 2, 3, 5, 6, 7
MAX_NEW = 12


def tiny_qwen() -> SplitVLM:
    text = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=V, max_position_embeddings=512, tie_word_embeddings=False,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, pad_token_id=PAD, bos_token_id=BOS,
                eos_token_id=EOS)
    vision = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE, video_token_id=VIDEO,
                              vision_start_token_id=START, vision_end_token_id=END, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = PAD, EOS
    return chaotic_(SplitVLM(model))


def inputs(lengths=(3, 7), sizes=((56, 56), (112, 84))) -> dict[str, torch.Tensor]:
    """What a Qwen2.5-VL processor returns: patches, grids, and prompts with one placeholder per merged patch."""
    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2,
                                         temporal_patch_size=2)
    g = torch.Generator().manual_seed(0)
    images = [Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()) for w, h in sizes]
    encoded = processor(images=images, return_tensors="pt")
    rows = []
    for grid, length in zip(encoded["image_grid_thw"], lengths, strict=True):
        text = torch.randint(10, V, (length,), generator=g).tolist()
        rows.append([START] + [IMAGE] * (int(grid.prod()) // 4) + [END] + text)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return {"pixel_values": encoded["pixel_values"], "image_grid_thw": encoded["image_grid_thw"], "input_ids": ids,
            "attention_mask": mask, "mm_token_type_ids": (ids == IMAGE).int()}


def reference(vlm, batch, max_new_tokens=MAX_NEW, **kwargs):
    with torch.no_grad():
        out = vlm.model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, **kwargs)
    return out[:, batch["input_ids"].shape[1]:]


@pytest.fixture(scope="module")
def setup():
    vlm, batch = tiny_qwen(), inputs()
    return vlm, batch, reference(vlm, batch)


def test_reference_is_not_degenerate_and_rows_differ_in_image_tokens(setup):
    vlm, batch, ref = setup
    assert all(len(set(row.tolist())) >= 4 for row in ref), ref
    assert batch["mm_token_type_ids"].sum(-1).tolist() == [4, 12]  # 56x56 and 112x84 images


def test_plain_greedy_matches_generate(setup):
    vlm, batch, ref = setup
    out = generate(vlm, GreedyDecoder(vlm.decoder, [EOS]), **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(PAD), ref)


@pytest.mark.parametrize("draft", [1, 4, "dynamic"])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("imitation", ["none", "random", "random-attention"])
def test_ssd_matches_generate(setup, draft, n, imitation):
    vlm, batch, ref = setup
    net = None
    if imitation != "none":
        torch.manual_seed(1)
        net = ImitationNetwork(64, residual=False, attention=imitation.endswith("attention")).eval()
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, net, draft), [EOS])
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(PAD), ref)
    assert out.drafted > 0


def test_eos_and_the_length_cap_inside_a_draft(setup):
    vlm, batch, ref = setup
    row = ref[1].tolist()
    eos = next(t for i, t in enumerate(row) if 3 <= i and t not in row[:i])
    expected = reference(vlm, batch, eos_token_id=eos)
    out = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(2), [eos]), **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(PAD), expected)
    for max_new in (1, 2, 6):
        out = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(1), [EOS]), **batch, max_new_tokens=max_new)
        assert torch.equal(out.padded(PAD), ref[:, :max_new])


def test_missing_grid_is_a_clear_error(setup):
    vlm, batch, _ = setup
    with pytest.raises(ValueError, match="needs image_grid_thw"):
        generate(vlm, GreedyDecoder(vlm.decoder, [EOS]), batch["pixel_values"], batch["input_ids"],
                 batch["attention_mask"], max_new_tokens=2)
