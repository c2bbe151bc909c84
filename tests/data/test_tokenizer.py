import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer

from lightning_ssd.data.synth import text
from lightning_ssd.data.synth.scene import sample_scene
from lightning_ssd.data.tokenizer import build_tokenizer, default_tokenizer
from tests.data.helpers import LLAVA_IMAGE_TOKENS, NUM_QUERY_TOKENS, tiny_processor


def test_special_token_ids():
    tok = default_tokenizer()
    assert (tok.pad_token, tok.pad_token_id) == ("<pad>", 0)
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<s>", "</s>", "<unk>")
    assert tok.convert_tokens_to_ids("<image>") == 4
    assert "<image>" in tok.all_special_tokens
    assert tok("a photo of").input_ids[0] == tok.bos_token_id
    assert tok("a photo of").input_ids[-1] != tok.eos_token_id


def test_every_benchmark_word_is_one_token():
    tok = default_tokenizer()
    for word in text.corpus_words():
        ids = tok(" " + word, add_special_tokens=False).input_ids
        assert len(ids) == 1, (word, tok.convert_ids_to_tokens(ids))


def test_roundtrip_and_no_unknown_on_foreign_text():
    tok = default_tokenizer()
    scene = sample_scene(np.random.default_rng(3))
    caption = text.captions(scene, np.random.default_rng(3), 1)[0]
    assert tok.decode(tok(caption).input_ids, skip_special_tokens=True) == caption
    foreign = "Zebras graze near 3 giraffes!"
    ids = tok(foreign).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == foreign.lower()


def test_vocab_is_stable_across_processes():
    code = ("from lightning_ssd.data.tokenizer import default_tokenizer as d; "
            "t = d(); print(len(t), sorted(t.get_vocab().items()))")
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
           for _ in range(2)]
    assert out[0] == out[1]
    assert out[0].split()[0] == str(len(default_tokenizer()))


def test_padding_side_per_copy():
    left, right = default_tokenizer(padding_side="left"), default_tokenizer()
    assert (left.padding_side, right.padding_side) == ("left", "right")
    batch = left(["a photo of", "a photo of a red circle"], padding=True).input_ids
    assert batch[0][0] == left.pad_token_id and batch[1][0] != left.pad_token_id
    batch = right(["a photo of", "a photo of a red circle"], padding=True, padding_side="left").input_ids
    assert batch[0][0] == right.pad_token_id


def test_build_tokenizer_on_custom_corpus(tmp_path):
    tok = build_tokenizer(["the quick brown fox", "the lazy dog"])
    assert len(tok(" quick", add_special_tokens=False).input_ids) == 1
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("the lazy dog").input_ids == tok("the lazy dog").input_ids
    assert reloaded.convert_tokens_to_ids("<image>") == 4


@pytest.mark.parametrize(("family", "prompt", "expected_placeholders"), [
    ("blip2-opt", "a photo of", NUM_QUERY_TOKENS),
    ("llava", "USER: <image>\nDescribe the image in one sentence. ASSISTANT:", LLAVA_IMAGE_TOKENS),
])
def test_processors_accept_the_tokenizer(tmp_path, family, prompt, expected_placeholders):
    image = Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8))
    processor = tiny_processor(family)
    out = processor(images=[image], text=[prompt], return_tensors="pt")
    assert tuple(out["pixel_values"].shape) == (1, 3, 32, 32)
    assert (out["input_ids"] == 4).sum().item() == expected_placeholders
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is type(processor)
    again = reloaded(images=[image], text=[prompt], return_tensors="pt")
    assert again["input_ids"].tolist() == out["input_ids"].tolist()


def test_the_shipped_tokenizer_is_what_training_gives():
    from lightning_ssd.backbones.tokenizer import _preset_json
    from lightning_ssd.data.tokenizer import train_default_tokenizer

    assert train_default_tokenizer() + "\n" == _preset_json()


def test_loading_a_preset_needs_nothing_from_the_data_package():
    code = ("import sys; from lightning_ssd.backbones import load_backbone, load_processor; "
            "load_processor('tiny-llava'); load_backbone('tiny-llava'); "
            "print(sorted(m for m in sys.modules if m.startswith('lightning_ssd.data')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
