"""The base-blip2-t5 preset (Table 3's backbone family, sized like the embedded default) splits and decodes."""

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
