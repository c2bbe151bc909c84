"""The base-blip2-t5 preset (Table 3's backbone family, sized like the embedded default) splits, decodes and sees
the image."""

from dataclasses import replace

import pytest
import torch

from lightning_ssd.backbones import load_backbone
from lightning_ssd.backbones.presets import PRESETS
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.reproduce.decode_eval import prompt_inputs, split_batches
from lightning_ssd.reproduce.settings import QUICK


def test_base_blip2_t5_is_sized_like_the_embedded_default_and_ssd_is_lossless_on_it():
    t5, llava = PRESETS["base-blip2-t5"], PRESETS["base-llava"]
    assert (t5.num_layers, t5.hidden_size, t5.ffn_size) == (llava.num_layers, llava.hidden_size, llava.ffn_size)
    vlm = load_backbone("base-blip2-t5").eval()
    assert vlm.decoder.is_encoder_decoder and vlm.decoder.num_layers == 24
    batch = split_batches("base-blip2-t5", QUICK, "test", images=2, batch_size=2)[0]
    eos = vlm.eos_token_id
    with torch.inference_mode():
        full = generate(vlm, build_decoder("full", vlm.decoder, eos), **prompt_inputs(batch), max_new_tokens=6)
        ssd = generate(vlm, build_decoder("ssd", vlm.decoder, eos, DraftSpec(2, None, 4)), **prompt_inputs(batch),
                       max_new_tokens=6)
    assert ssd.tokens == full.tokens


def _spread_over_images(vlm, pixel_values: torch.Tensor) -> float:
    """How much the Q-Former's output (what the decoder sees of an image) varies over images, relative to its size."""
    m = vlm.model
    with torch.no_grad():
        image = m.vision_model(pixel_values=pixel_values).last_hidden_state
        out = m.qformer(query_embeds=m.query_tokens.expand(len(pixel_values), -1, -1), encoder_hidden_states=image,
                        encoder_attention_mask=torch.ones(image.shape[:2], dtype=torch.long)).last_hidden_state
    return ((out - out.mean(0)).norm() / out.mean(0).norm() / len(out) ** 0.5).item()


@pytest.mark.parametrize("preset", ["base-blip2-t5", "base-blip2-opt"])
def test_a_fresh_base_blip2_passes_the_images_differences_to_the_decoder(monkeypatch, preset):
    """At transformers' init (std 0.02) the random Q-Former passes about 0.4% of the images' differences, and every
    fine-tuned seed then wrote one caption for every image; the preset's init passes most of them."""
    pixels = split_batches(preset, QUICK, "test", images=8, batch_size=8)[0]["pixel_values"]
    assert _spread_over_images(load_backbone(preset), pixels) > 0.3
    monkeypatch.setitem(PRESETS, preset, replace(PRESETS[preset], qformer_init_std=None))
    assert _spread_over_images(load_backbone(preset), pixels) < 0.02


def test_the_7b_preset_has_llava_1_5_7b_decoder_shape():
    """Built on the meta device: its sizes, without the 27 GB of weights."""
    from transformers import LlavaForConditionalGeneration

    from lightning_ssd.backbones.loading import load_processor, special_tokens
    from lightning_ssd.backbones.presets import _llava_config

    preset = PRESETS["7b-llava"]
    tokens = special_tokens(load_processor("7b-llava").tokenizer, preset.family)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(_llava_config(preset, tokens))
    layers = model.model.language_model.layers
    width, ffn = 4096, 11008
    per_layer = 4 * width * width + 3 * width * ffn + 2 * width  # attention, MLP, two RMSNorms (no biases)
    assert len(layers) == 32 and sum(p.numel() for p in layers.parameters()) == 32 * per_layer
    assert layers[0].self_attn.config.num_attention_heads == 32
