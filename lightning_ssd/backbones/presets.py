"""Named model presets: real transformers VLM classes built from small configs with random init.

`tiny-*` presets are for tests (milliseconds per forward); `small-*` presets are wide enough that decode time on a
CPU is dominated by layer compute rather than Python overhead, which is what a decoding benchmark must measure.
No weights are downloaded: every preset is random-initialised from a seed, then trained by the project's own
fine-tuning stage where needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    OPTConfig,
    PreTrainedModel,
    T5Config,
)

from lightning_ssd.backbones.vlm import Family


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids a preset's config needs from its tokenizer."""

    vocab_size: int
    pad: int
    bos: int
    eos: int
    image: int


@dataclass(frozen=True)
class Preset:
    """Sizes of one named preset. Vision parts stay tiny: only the LLM decoder matters for decoding speed."""

    family: Family
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_size: int
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    num_query_tokens: int = 8
    max_positions: int = 512

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


PRESETS: dict[str, Preset] = {
    "tiny-blip2-opt": Preset("blip2-opt", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128),
    "tiny-blip2-t5": Preset("blip2-t5", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128),
    "tiny-llava": Preset("llava", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128),
    "base-blip2-opt": Preset("blip2-opt", hidden_size=256, num_layers=8, num_heads=4, ffn_size=1024, image_size=64),
    # The embedded default: deep and narrow like a real LLM (L = 24), so that a 2-layer draft is a small fraction of
    # the full model; 64 x 64 images in 16 patches of 16 x 16 keep the image prefix short for CPU fine-tuning.
    "base-llava": Preset(
        "llava", hidden_size=128, num_layers=24, num_heads=4, ffn_size=384, image_size=64, patch_size=16
    ),
    "small-blip2-opt": Preset("blip2-opt", hidden_size=1024, num_layers=16, num_heads=16, ffn_size=4096),
    "small-llava": Preset("llava", hidden_size=1024, num_layers=16, num_heads=16, ffn_size=2816),
}


def _vision_kwargs(p: Preset) -> dict:
    return dict(
        hidden_size=p.vision_hidden,
        intermediate_size=2 * p.vision_hidden,
        num_hidden_layers=p.vision_layers,
        num_attention_heads=2,
        image_size=p.image_size,
        patch_size=p.patch_size,
    )


def _blip2_config(p: Preset, tokens: SpecialTokens) -> Blip2Config:
    ids = dict(pad_token_id=tokens.pad, bos_token_id=tokens.bos, eos_token_id=tokens.eos)
    if p.family == "blip2-opt":
        text = OPTConfig(
            vocab_size=tokens.vocab_size,
            hidden_size=p.hidden_size,
            word_embed_proj_dim=p.hidden_size,
            num_hidden_layers=p.num_layers,
            num_attention_heads=p.num_heads,
            ffn_dim=p.ffn_size,
            max_position_embeddings=p.max_positions,
            **ids,
        )
    else:
        text = T5Config(
            vocab_size=tokens.vocab_size,
            d_model=p.hidden_size,
            d_kv=p.hidden_size // p.num_heads,
            d_ff=p.ffn_size,
            num_layers=p.num_layers,
            num_decoder_layers=p.num_layers,  # unequal depths break transformers' T5 generate
            num_heads=p.num_heads,
            feed_forward_proj="gated-gelu",
            decoder_start_token_id=tokens.pad,
            **ids,
        )
    # BLIP-2's default vision init (std 1e-10) would make a random model blind to the image.
    vision = dict(_vision_kwargs(p), initializer_range=0.02)
    qformer = dict(
        hidden_size=p.vision_hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * p.vision_hidden,
        encoder_hidden_size=p.vision_hidden,
    )
    return Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text.to_dict(),
        num_query_tokens=p.num_query_tokens,
        image_token_index=tokens.image,
    )


def _llava_config(p: Preset, tokens: SpecialTokens) -> LlavaConfig:
    text = LlamaConfig(
        vocab_size=tokens.vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.ffn_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_heads,
        max_position_embeddings=p.max_positions,
        pad_token_id=tokens.pad,
        bos_token_id=tokens.bos,
        eos_token_id=tokens.eos,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(p)).to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokens.image,
        image_seq_length=p.num_patches,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )


def build_preset_model(name: str, tokens: SpecialTokens, seed: int = 0) -> PreTrainedModel:
    """A random-initialised VLM of preset `name`, identical for the same seed and tokens."""
    if name not in PRESETS:
        raise KeyError(f"unknown backbone preset {name!r}; choose one of {sorted(PRESETS)} or a checkpoint folder")
    preset = PRESETS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if preset.family == "llava":
            model = LlavaForConditionalGeneration(_llava_config(preset, tokens))
        else:
            model = Blip2ForConditionalGeneration(_blip2_config(preset, tokens))
    if preset.family != "llava":
        # transformers zero-initialises BLIP-2's query tokens; the original BLIP-2 draws them from N(0, 0.02).
        # Identical queries make a freshly trained Q-Former prone to emitting the same features for every image.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            torch.nn.init.normal_(model.query_tokens, std=0.02)
    model.generation_config.pad_token_id = tokens.pad
    model.generation_config.eos_token_id = tokens.eos
    model.generation_config.bos_token_id = tokens.bos
    return model.eval()
