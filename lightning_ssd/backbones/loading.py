"""Loading backbones and their processors: named presets or a local checkpoint folder, never the hub."""

from __future__ import annotations

import copy
import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoProcessor,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    LlavaProcessor,
    ProcessorMixin,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.blip import BlipImageProcessorPil
from transformers.models.clip import CLIPImageProcessorPil
from transformers.models.llava_next import LlavaNextImageProcessorPil
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from lightning_ssd.backbones.presets import PRESETS, SpecialTokens, build_preset_model, grid_pinpoints
from lightning_ssd.backbones.qwen_processing import IMAGE_PAD, Qwen2VLImageTextProcessor
from lightning_ssd.backbones.tokenizer import preset_tokenizer, qwen_preset_tokenizer
from lightning_ssd.backbones.vlm import Family, SplitVLM
from lightning_ssd.errors import UserError
from lightning_ssd.files import umask_mode

IMAGE_TOKEN = "<image>"
_MODEL_CLASSES = {
    "blip-2": Blip2ForConditionalGeneration,
    "llava": LlavaForConditionalGeneration,
    "llava_next": LlavaNextForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
}


class CheckpointError(UserError, ValueError):
    """A backbone name or folder that cannot be loaded; the message names the file and what to do."""


def _not_found(name: str, setting: str) -> str:
    close = difflib.get_close_matches(name, PRESETS, n=1)
    hint = f"did you mean {close[0]!r}? Otherwise give" if close else "give"
    return (f"{setting} {name!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor an existing folder; {hint} "
            "a checkpoint folder written by save_pretrained (such as the fine-tune stage's export_dir) or a preset")


def _read_config(path: Path, setting: str = "backbone") -> dict:
    config_file = path / "config.json"
    if not path.is_dir():
        raise CheckpointError(_not_found(str(path), setting))
    if not config_file.is_file():
        raise CheckpointError(f"{setting}: {config_file} not found: {path} is not a transformers checkpoint folder")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{setting}: {config_file} is not valid JSON ({err})") from err
    if config.get("model_type") not in _MODEL_CLASSES:
        raise CheckpointError(
            f"{setting}: {config_file}: model_type {config.get('model_type')!r} is not a supported VLM; supported: "
            "'blip-2' (OPT or Flan-T5 text model), 'llava', 'llava_next', 'qwen2_5_vl'"
        )
    return config


def check_backbone(name_or_path: str, setting: str = "backbone") -> int:
    """Checks, without loading any weights, that `name_or_path` is a preset or a supported checkpoint folder, and
    returns the number of decoder layers L of its language model. Errors name the flag or key `setting`."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path].num_layers
    path = Path(name_or_path)
    _read_config(path, setting)
    try:
        text = AutoConfig.from_pretrained(path, local_files_only=True).get_text_config(decoder=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{setting}: cannot read {path / 'config.json'} ({err})") from err
    return getattr(text, "num_decoder_layers", None) or text.num_hidden_layers


def family_of(name_or_path: str) -> Family:
    """'blip2-opt', 'blip2-t5', 'llava', 'llava-next' or 'qwen2.5-vl' for a preset name or a checkpoint folder."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path].family
    config = _read_config(Path(name_or_path))
    if config["model_type"] == "llava":
        return "llava"
    if config["model_type"] == "qwen2_5_vl":
        return "qwen2.5-vl"
    if config["model_type"] == "llava_next":
        return "llava-next"
    text_type = config.get("text_config", {}).get("model_type", "opt")
    return "blip2-t5" if text_type in ("t5", "mt5", "umt5") else "blip2-opt"


def absolute_backbone(name_or_path: str) -> str:
    """A preset name as it is, a checkpoint folder as an absolute path: what a checkpoint records, so that it names
    the same backbone from any working directory."""
    return name_or_path if name_or_path in PRESETS else os.path.abspath(name_or_path)


def _token_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise CheckpointError(f"the tokenizer has no {token!r} token; add it as a special token")
    return token_id


def special_tokens(tokenizer, family: Family = "llava") -> SpecialTokens:
    """The ids a preset of `family` needs from its tokenizer (Qwen2.5-VL: its vision markers, and `</s>` as the
    second generation eos, where real checkpoints have `<|endoftext|>`)."""
    if family != "qwen2.5-vl":
        return SpecialTokens(vocab_size=len(tokenizer), pad=tokenizer.pad_token_id, bos=tokenizer.bos_token_id,
                             eos=tokenizer.eos_token_id, image=_token_id(tokenizer, IMAGE_TOKEN))
    ids = {token: _token_id(tokenizer, token) for token in ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>")}
    return SpecialTokens(
        vocab_size=len(tokenizer),
        pad=tokenizer.pad_token_id,
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        image=_token_id(tokenizer, IMAGE_PAD),
        vision_start=ids["<|vision_start|>"],
        vision_end=ids["<|vision_end|>"],
        video=ids["<|video_pad|>"],
        extra_eos=(_token_id(tokenizer, "</s>"),),
    )


@lru_cache(maxsize=8)
def _preset_processor(name: str) -> ProcessorMixin:
    preset = PRESETS[name]
    size = preset.image_size
    if preset.family == "qwen2.5-vl":
        image_processor = Qwen2VLImageProcessorPil(min_pixels=size**2, max_pixels=2 * size**2,
                                                   patch_size=preset.patch_size, merge_size=2, temporal_patch_size=2)
        return Qwen2VLImageTextProcessor(image_processor, qwen_preset_tokenizer())
    tokenizer = preset_tokenizer()
    if preset.family == "llava-next":
        return LlavaNextProcessor(
            image_processor=LlavaNextImageProcessorPil(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                image_grid_pinpoints=grid_pinpoints(preset),
            ),
            tokenizer=tokenizer,
            patch_size=preset.patch_size,
            vision_feature_select_strategy="default",
            image_token=IMAGE_TOKEN,
            num_additional_image_tokens=1,
        )
    if preset.family == "llava":
        return LlavaProcessor(
            image_processor=CLIPImageProcessorPil(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            ),
            tokenizer=tokenizer,
            patch_size=preset.patch_size,
            vision_feature_select_strategy="default",
            image_token=IMAGE_TOKEN,
            num_additional_image_tokens=1,
        )
    return Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": size, "width": size}),
        tokenizer=tokenizer,
        num_query_tokens=preset.num_query_tokens,
    )


def load_processor(name_or_path: str) -> ProcessorMixin:
    """The processor (image processor + tokenizer) of a preset or of a local checkpoint folder."""
    if name_or_path in PRESETS:
        return copy.deepcopy(_preset_processor(name_or_path))  # callers may set padding_side
    path = Path(name_or_path)
    config = _read_config(path)
    try:
        if config["model_type"] == "qwen2_5_vl":  # transformers' own needs torchvision (see qwen_processing.py)
            processor = Qwen2VLImageTextProcessor.from_pretrained(path)
        else:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot load a processor from {path} ({err}); the folder needs processor_config.json / "
            "preprocessor_config.json and tokenizer files saved with save_pretrained"
        ) from err
    image_token = str(getattr(processor, "image_token", IMAGE_TOKEN))
    token_id = processor.tokenizer.convert_tokens_to_ids(image_token)
    expected = config.get("image_token_id", config.get("image_token_index"))
    # BLIP-2's processor silently appends a missing image token with a new id: compare with the model's config.
    if token_id is None or token_id == processor.tokenizer.unk_token_id or token_id != expected:
        raise CheckpointError(
            f"the tokenizer in {path} maps the image token {image_token!r} to id {token_id}, but config.json "
            f"expects image_token_index={expected}: the tokenizer lacks the image token or belongs to another "
            "model; add the token as a special token with that id and save again"
        )
    return processor


def load_backbone(name_or_path: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> SplitVLM:
    """A `SplitVLM` from a preset name (random init from `seed`) or a local checkpoint folder (offline)."""
    if name_or_path in PRESETS:
        tokens = special_tokens(load_processor(name_or_path).tokenizer, PRESETS[name_or_path].family)
        model = build_preset_model(name_or_path, tokens, seed=seed)
        return SplitVLM(model.to(dtype))
    path = Path(name_or_path)
    config = _read_config(path)
    try:
        model = _MODEL_CLASSES[config["model_type"]].from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"cannot load the model weights in {path}: {err}") from err
    return SplitVLM(model.eval())


@contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty staging folder next to `path`; on success it replaces `path` whole, on failure it is removed,
    so a failed write leaves neither a half folder nor a damaged earlier one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        _readable_by_all(staging)
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            staging.rename(target)
            shutil.rmtree(backup)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _readable_by_all(folder: Path) -> None:
    """mkdtemp makes a private folder: give it (and what was written in it) the usual permissions of the umask."""
    folder.chmod(umask_mode(directory=True))
    for path in folder.rglob("*"):
        path.chmod(umask_mode(directory=path.is_dir()))


def save_backbone(vlm: SplitVLM, processor: ProcessorMixin, path: str | os.PathLike) -> Path:
    """Writes model + processor with save_pretrained into `path`, atomically (a failed save leaves no half folder)."""
    with staged_folder(path) as staging:
        vlm.model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return Path(path)
