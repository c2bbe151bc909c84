"""Tiny VLMs and inputs for tests: real transformers classes, random init, no tokenizer needed."""

from __future__ import annotations

import torch

from lightning_ssd.backbones.presets import PRESETS, SpecialTokens, build_preset_model
from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.bench.runner import make_redundant

TOKENS = SpecialTokens(vocab_size=96, pad=0, bos=1, eos=2, image=3)
TINY = ("tiny-blip2-opt", "tiny-blip2-t5", "tiny-llava")
# families beyond the paper's: their inputs come from their processors (image sizes change the image token count)
TINY_NEW = ("tiny-llava-next", "tiny-qwen2.5-vl")


def tiny_vlm(name: str, seed: int = 0) -> SplitVLM:
    return SplitVLM(build_preset_model(name, TOKENS, seed=seed))


def image_prefix_length(name: str) -> int:
    preset = PRESETS[name]
    return preset.num_patches if preset.family == "llava" else preset.num_query_tokens


def make_inputs(name: str, text_lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """A left-padded batch: [pad...] + image placeholders + bos + random text tokens."""
    g = torch.Generator().manual_seed(seed)
    preset = PRESETS[name]
    prefix = image_prefix_length(name)
    total = max(text_lengths) + prefix + 1
    ids = torch.full((len(text_lengths), total), TOKENS.pad)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(text_lengths):
        text = torch.randint(5, TOKENS.vocab_size, (length,), generator=g)
        seq = torch.cat([torch.full((prefix,), TOKENS.image), torch.tensor([TOKENS.bos]), text])
        ids[row, total - len(seq) :] = seq
        mask[row, total - len(seq) :] = 1
    pixels = torch.randn(len(text_lengths), 3, preset.image_size, preset.image_size, generator=g)
    return {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask}


def chaotic_(vlm: SplitVLM, std: float = 0.2, seed: int = 0) -> SplitVLM:
    """Re-draws the decoder's matrices with a larger std so greedy outputs vary instead of repeating one token."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vlm.decoder.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return vlm


def make_redundant_(vlm: SplitVLM, n: int) -> SplitVLM:
    """Zeroes what layers n..L write into the residual stream: x_L == x_n while the compute still runs."""
    make_redundant(vlm, n)
    return vlm


def reference_generate(vlm: SplitVLM, batch: dict, max_new_tokens: int, **kwargs) -> torch.Tensor:
    """New tokens of transformers' own greedy generate, pad after EOS."""
    with torch.no_grad():
        out = vlm.model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, **kwargs)
    skip = 1 if vlm.decoder.is_encoder_decoder else batch["input_ids"].shape[1]
    return out[:, skip:]


def fabricated_result(emitted_per_row: list[list[int]], seconds_per_row: float, drafts: int = 3):
    """A decoded batch with hand-made cycles and times: each row emits `emitted_per_row[r]` tokens per cycle
    (after the prefill's first token) and took `seconds_per_row` in all; `drafts` = 0 makes plain greedy steps."""
    from lightning_ssd.decoding.result import Cycle, GenerationResult, SequenceResult

    rows = []
    for emitted in emitted_per_row:
        cycles = tuple(Cycle(drafted=drafts, accepted=min(e - 1, drafts) if drafts else 0, emitted=e, deep_passes=1,
                             draft_time_s=0.0, verify_time_s=0.0) for e in emitted)
        rows.append(SequenceResult(tokens=tuple(range(1 + sum(emitted))), cycles=cycles,
                                   prefill_time_s=0.0, decode_time_s=seconds_per_row))
    return GenerationResult(tuple(rows))
