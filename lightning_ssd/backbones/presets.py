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
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    OPTConfig,
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
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
    vision_start: int | None = None
    vision_end: int | None = None
    video: int | None = None
    extra_eos: tuple[int, ...] = ()


@dataclass(frozen=True)
class Preset:
    """Sizes of one named preset. Vision parts stay tiny: only the LLM decoder matters for decoding speed.

    `image_size` is the vision tower's input side; LLaVA-NeXT tiles images on grids of 1-2 such tiles per side, and
    Qwen2.5-VL resizes each image to between `image_size`^2 and 2 x `image_size`^2 pixels (in 14-pixel patches,
    merged 2 x 2 into one token), so that images of other shapes give other numbers of image tokens.
    """

    family: Family
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_size: int
    num_kv_heads: int | None = None  # None: as many as num_heads (no GQA)
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    num_query_tokens: int = 8
    max_positions: int = 512
    qformer_init_std: float | None = None  # BLIP-2: std of the Q-Former's linear weights (None: transformers' 0.02)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads


PRESETS: dict[str, Preset] = {
    "tiny-blip2-opt": Preset("blip2-opt", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128),
    "tiny-blip2-t5": Preset("blip2-t5", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128),
    "tiny-llava": Preset("llava", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128),
    # Its Q-Former starts at std 0.3, as base-blip2-t5's (below) does: at 0.02 a 600-image fine-tune wrote one caption
    # for 40 test images, at 0.3 26 distinct ones.
    "base-blip2-opt": Preset("blip2-opt", hidden_size=256, num_layers=8, num_heads=4, ffn_size=1024, image_size=64,
                             qformer_init_std=0.3),
    # The embedded default: deep and narrow like a real LLM (L = 24), so that a 2-layer draft is a small fraction of
    # the full model; 64 x 64 images in 16 patches of 16 x 16 keep the image prefix short for CPU fine-tuning.
    "base-llava": Preset(
        "llava", hidden_size=128, num_layers=24, num_heads=4, ffn_size=384, image_size=64, patch_size=16
    ),
    # BLIP-2 Flan-T5 (the paper's Table 3 backbone) sized like the embedded default: 24 decoder layers of width 128
    # (and as many encoder layers: transformers' T5 generate needs equal depths).
    # Its Q-Former starts at std 0.3: the original starts from BERT's weights, and a random one at transformers'
    # 0.02 passes 0.4% of the images' variation to the decoder (their own varies by 71%), too little for the
    # fine-tune to find: every seed's captioner then wrote one caption for every image. At 0.3 it passes 62%.
    "base-blip2-t5": Preset("blip2-t5", hidden_size=128, num_layers=24, num_heads=4, ffn_size=384, image_size=64,
                            patch_size=16, qformer_init_std=0.3),
    "tiny-llava-next": Preset("llava-next", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128, num_kv_heads=2),
    "tiny-qwen2.5-vl": Preset(
        "qwen2.5-vl", hidden_size=64, num_layers=4, num_heads=4, ffn_size=128, num_kv_heads=2, image_size=56,
        patch_size=14,
    ),
    # Qwen2.5-VL at the embedded default's depth and width (L = 24, GQA 4:2); the benchmark's 64 x 64 images are
    # resized to 112 x 112: 8 x 8 patches, merged into 16 image tokens, as many as base-llava's.
    "base-qwen2.5-vl": Preset(
        "qwen2.5-vl", hidden_size=128, num_layers=24, num_heads=4, ffn_size=384, num_kv_heads=2, image_size=112,
        patch_size=14,
    ),
    "base-llava-next": Preset(
        "llava-next", hidden_size=128, num_layers=24, num_heads=4, ffn_size=384, num_kv_heads=2, image_size=32,
        patch_size=8,
    ),
    "small-blip2-opt": Preset("blip2-opt", hidden_size=1024, num_layers=16, num_heads=16, ffn_size=4096),
    "small-llava": Preset("llava", hidden_size=1024, num_layers=16, num_heads=16, ffn_size=2816),
    # LLaVA-1.5-7B's decoder shape (Vicuna-7B: width 4096, 32 layers, 32 heads, FFN 11008; 6.5B decoder weights), with
    # tiny vision parts and the preset tokenizer's small vocabulary: for GPU benchmarks. It is built in float32
    # before any cast, which takes about 27 GB of host memory.
    "7b-llava": Preset("llava", hidden_size=4096, num_layers=32, num_heads=32, ffn_size=11008),
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


def _decoder_sizes(p: Preset, tokens: SpecialTokens) -> dict:
    """The text config entries that Llama and Qwen2 decoders name alike."""
    return dict(
        vocab_size=tokens.vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.ffn_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.kv_heads,
        max_position_embeddings=p.max_positions,
        pad_token_id=tokens.pad,
        bos_token_id=tokens.bos,
        eos_token_id=tokens.eos,
        tie_word_embeddings=False,
    )


def _llama_config(p: Preset, tokens: SpecialTokens) -> LlamaConfig:
    return LlamaConfig(**_decoder_sizes(p, tokens))


def grid_pinpoints(p: Preset) -> list[list[int]]:
    """LLaVA-NeXT's any-resolution grids of a preset: 1 x 2, 2 x 1 and 2 x 2 tiles."""
    s = p.image_size
    return [[s, 2 * s], [2 * s, s], [2 * s, 2 * s]]


def _llava_next_config(p: Preset, tokens: SpecialTokens) -> LlavaNextConfig:
    return LlavaNextConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(p)).to_dict(),
        text_config=_llama_config(p, tokens).to_dict(),
        image_token_index=tokens.image,
        image_grid_pinpoints=grid_pinpoints(p),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )


def _qwen_config(p: Preset, tokens: SpecialTokens) -> Qwen2_5_VLConfig:
    if None in (tokens.vision_start, tokens.vision_end, tokens.video):
        raise ValueError("a Qwen2.5-VL preset needs the vision start/end and video token ids of its tokenizer")
    head_dim = p.hidden_size // p.num_heads
    unit = head_dim // 16  # M-RoPE splits the head_dim / 2 rotary pairs 2 : 3 : 3 (time, height, width), as Qwen does
    text = dict(_decoder_sizes(p, tokens),
                rope_scaling={"type": "mrope", "mrope_section": [2 * unit, 3 * unit, 3 * unit]})
    vision = dict(
        depth=p.vision_layers,
        hidden_size=p.vision_hidden,
        num_heads=2,
        intermediate_size=2 * p.vision_hidden,
        out_hidden_size=p.hidden_size,
        patch_size=p.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=4 * p.patch_size,
        fullatt_block_indexes=[p.vision_layers - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tokens.image,
        video_token_id=tokens.video,
        vision_start_token_id=tokens.vision_start,
        vision_end_token_id=tokens.vision_end,
        tie_word_embeddings=False,
    )


def _llava_config(p: Preset, tokens: SpecialTokens) -> LlavaConfig:
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(p)).to_dict(),
        text_config=_llama_config(p, tokens).to_dict(),
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
        elif preset.family == "llava-next":
            model = LlavaNextForConditionalGeneration(_llava_next_config(preset, tokens))
        elif preset.family == "qwen2.5-vl":
            model = Qwen2_5_VLForConditionalGeneration(_qwen_config(preset, tokens))
        else:
            model = Blip2ForConditionalGeneration(_blip2_config(preset, tokens))
    if preset.family.startswith("blip2"):
        # transformers zero-initialises BLIP-2's query tokens; the original BLIP-2 draws them from N(0, 0.02).
        # Identical queries make a freshly trained Q-Former prone to emitting the same features for every image.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            torch.nn.init.normal_(model.query_tokens, std=0.02)
            if preset.qformer_init_std is not None:
                for module in model.qformer.modules():
                    if isinstance(module, torch.nn.Linear):
                        torch.nn.init.normal_(module.weight, std=preset.qformer_init_std)
    model.generation_config.pad_token_id = tokens.pad
    model.generation_config.eos_token_id = [tokens.eos, *tokens.extra_eos] if tokens.extra_eos else tokens.eos
    model.generation_config.bos_token_id = tokens.bos
    return model.eval()
