import numpy as np
import pytest
import torch
from PIL import Image

from lightning_ssd.backbones import load_processor
from lightning_ssd.backbones.loading import family_of
from lightning_ssd.data.collate import IGNORE_INDEX, VLCollator
from lightning_ssd.data.prompts import build_prompt
from lightning_ssd.data.readers.base import Record, Sample

PRESETS = {"blip2-opt": "tiny-blip2-opt", "blip2-t5": "tiny-blip2-t5", "llava": "tiny-llava"}
PLACEHOLDERS = {"blip2-opt": 8, "blip2-t5": 8, "llava": 16}
IMAGE_ID = 4


def _samples() -> list[Sample]:
    image = Image.fromarray(np.full((40, 40, 3), 128, dtype=np.uint8))
    return [
        Sample(image, Record(0, "a", query="how many circles are there ?", target="two", references=("two",) * 10)),
        Sample(image, Record(0, "b", query="what colour is the square on the left ?", target="a very red square",
                             references=("red",))),
    ]


@pytest.mark.parametrize("family", list(PRESETS))
def test_batch_contract(family):
    processor = load_processor(PRESETS[family])
    tok = processor.tokenizer
    collate = VLCollator(processor, family, "vqa", max_target_length=16)
    batch = collate(_samples())
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["references"] == [["two"] * 10, ["red"]] and batch["sample_ids"] == ["a", "b"]
    assert batch["task"] == "vqa" and "candidates" not in batch

    prompts = batch["prompt_input_ids"]
    # Left padding: the shorter prompt starts with pads, every prompt ends with real tokens.
    assert (batch["prompt_attention_mask"][:, -1] == 1).all()
    lengths = batch["prompt_attention_mask"].sum(1)
    assert lengths[0] < lengths[1] and prompts[0, 0] == tok.pad_token_id
    for row, n in zip(prompts, lengths, strict=True):
        real = row[-n:]
        assert (real == IMAGE_ID).sum() == PLACEHOLDERS[family]
        text = tok.decode(real[real != IMAGE_ID], skip_special_tokens=True)
        assert "what colour" in text or "how many" in text

    targets = [" two", " a very red square"] if family != "blip2-t5" else ["two", "a very red square"]
    for i, target in enumerate(targets):
        labels = batch["labels"][i]
        kept = labels[labels != IGNORE_INDEX]
        assert kept.tolist() == tok(target, add_special_tokens=False).input_ids + [tok.eos_token_id]
        if family == "blip2-t5":
            assert labels[: len(kept)].tolist() == kept.tolist()  # right-padded with -100
            assert batch["input_ids"][i][batch["attention_mask"][i] == 1].tolist() == prompts[i][-lengths[i]:].tolist()
        else:
            n = int(lengths[i])
            ids, mask = batch["input_ids"][i], batch["attention_mask"][i]
            assert ids[:n].tolist() == prompts[i][-n:].tolist()  # prompt first, then target: right padding
            assert ids[n: n + len(kept)].tolist() == kept.tolist()
            assert mask.sum() == n + len(kept) and mask[: n + len(kept)].all()
            assert (labels[:n] == IGNORE_INDEX).all()  # prompt and image placeholders masked
            assert (ids[mask == 0] == tok.pad_token_id).all() and (labels[mask == 0] == IGNORE_INDEX).all()


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-llava-next"])
def test_batch_contract_of_the_new_families(name):
    """Images of two sizes: their own numbers of image tokens, and the grids / sizes the vision encoder needs."""
    processor = load_processor(name)
    family, tok = family_of(name), processor.tokenizer
    samples = _samples()
    samples[1] = Sample(Image.fromarray(np.full((60, 120, 3), 30, dtype=np.uint8)), samples[1].record)
    batch = VLCollator(processor, family, "vqa", max_target_length=16)(samples)
    image_id = tok.convert_tokens_to_ids(processor.image_token)
    placeholders = (batch["prompt_input_ids"] == image_id).sum(-1).tolist()
    assert placeholders[0] != placeholders[1]
    if family == "qwen2.5-vl":
        grids = batch["image_grid_thw"]
        assert grids.tolist() == [[1, 4, 4], [1, 4, 8]]  # 40 x 40 -> 56 x 56; 120 x 60 -> 112 x 56 (min 56^2 pixels)
        assert placeholders == (grids.prod(-1) // 4).tolist()
        assert batch["pixel_values"].shape == (int(grids.prod(-1).sum()), 3 * 2 * 14 * 14)
        end, answer = tok.convert_tokens_to_ids("<|im_end|>"), "a very red square"  # answers follow the newline
    else:
        assert batch["image_sizes"].tolist() == [[40, 40], [60, 120]]
        assert batch["pixel_values"].shape[:3] == (2, 5, 3)  # base image + up to 4 tiles (padded), as LLaVA-NeXT
        end, answer = tok.eos_token_id, " a very red square"
    kept = batch["labels"][1][batch["labels"][1] != IGNORE_INDEX].tolist()
    assert kept == tok(answer, add_special_tokens=False).input_ids + [end]
    text = tok.decode(batch["input_ids"][1][batch["attention_mask"][1] == 1])
    assert text.endswith("a very red square<|im_end|>" if family == "qwen2.5-vl" else "a very red square</s>")


def test_target_is_cut_to_max_length_with_eos():
    processor = load_processor("tiny-blip2-opt")
    batch = VLCollator(processor, "blip2-opt", "vqa", max_target_length=3)(_samples())
    kept = batch["labels"][1][batch["labels"][1] != IGNORE_INDEX].tolist()
    assert len(kept) == 3 and kept[-1] == processor.tokenizer.eos_token_id


def test_prompt_matches_the_processor_text():
    processor = load_processor("tiny-llava")
    collate = VLCollator(processor, "llava", "caption")
    sample = _samples()[0]
    assert collate.prompt(sample) == build_prompt("llava", "caption")
    assert collate.prompt(sample).startswith("USER: <image>\n") and collate.prompt(sample).endswith(" ASSISTANT:")


def test_visdial_fields_and_skipped_samples():
    processor = load_processor("tiny-blip2-opt")
    image = Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8))
    options = tuple(f"option {k}" for k in range(100))
    record = Record(0, "7-1", query="is it red?", target="option 3", references=("option 3",), context="a caption",
                    history=(("is it big?", "yes"),), candidates=options, gt_index=3)
    collate = VLCollator(processor, "blip2-opt", "visdial")
    batch = collate([None, Sample(image, record), Sample(image, Record(0, "t", query="q?", candidates=options))])
    assert batch["gt_index"].tolist() == [3, -1]
    assert batch["candidates"] == [list(options)] * 2
    assert batch["sample_ids"] == ["7-1", "t"]
    prompt = processor.tokenizer.decode(batch["prompt_input_ids"][0], skip_special_tokens=True)
    assert prompt.endswith("a caption question: is it big? answer: yes question: is it red? answer:")
    # A sample without target (test split) is trained on eos alone.
    assert batch["labels"][1][batch["labels"][1] != IGNORE_INDEX].tolist() == [processor.tokenizer.eos_token_id]
    assert collate([None, None]) is None
