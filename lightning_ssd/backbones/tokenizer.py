"""The tiny presets' tokenizer, shipped with the package (`preset_tokenizer.json`).

It is trained by `lightning_ssd.data.tokenizer` on the embedded benchmark's texts (`python -m
lightning_ssd.data.tokenizer` writes the file again; a test checks that it comes out the same), and read here, so
that loading a preset needs nothing from the data package.

Special tokens: ``<pad>`` (id 0), ``<s>``, ``</s>``, ``<unk>`` and the image placeholder ``<image>`` (id 4),
registered as a plain list entry of ``extra_special_tokens``, not as the named attribute
``extra_special_tokens={"image_token": ...}``: with the named attribute ``Blip2Processor`` (transformers 5.24) reads
``tokenizer.image_token`` as a string and fails on ``.content`` once given images. With the list form
``Blip2Processor`` adds its own ``AddedToken("<image>")``, which resolves to the same id, and ``LlavaProcessor``
takes ``image_token="<image>"``; both save and reload through ``AutoProcessor``.
"""

from __future__ import annotations

import functools
from importlib import resources

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, IMAGE)
PRESET_TOKENIZER_FILE = "preset_tokenizer.json"


def wrap_tokenizer(backend: Tokenizer, padding_side: str = "right") -> PreTrainedTokenizerFast:
    """A transformers tokenizer around a `tokenizers` backend with the presets' special tokens."""
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK, extra_special_tokens=[IMAGE], padding_side=padding_side,
                                   model_max_length=2048)


@functools.cache
def _preset_json() -> str:
    return resources.files(__package__).joinpath(PRESET_TOKENIZER_FILE).read_text(encoding="utf-8")


def preset_tokenizer(padding_side: str = "right") -> PreTrainedTokenizerFast:
    """The presets' tokenizer (559 tokens); each call returns an independent copy."""
    return wrap_tokenizer(Tokenizer.from_str(_preset_json()), padding_side)


# Qwen2.5-VL's chat and vision markers; real Qwen tokenizers end an answer on <|im_end|>.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                                        "<|image_pad|>", "<|video_pad|>")


def qwen_preset_tokenizer(padding_side: str = "right") -> PreTrainedTokenizerFast:
    """The presets' tokenizer with Qwen2.5-VL's markers appended (ids 559-564) and `<|im_end|>` as its eos, as in
    Qwen2.5-VL's own tokenizer; `</s>` stays, standing for Qwen's `<|endoftext|>` (the second generation eos)."""
    tokenizer = preset_tokenizer(padding_side)
    tokenizer.add_special_tokens({"extra_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"
    return tokenizer
