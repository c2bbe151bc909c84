import numpy as np
import pytest

from lightning_ssd.data.synth import text
from lightning_ssd.data.synth.scene import COLOURS, COUNT_WORDS, PATTERNS, sample_scene
from lightning_ssd.data.tokenizer import default_tokenizer

SCENES = [sample_scene(np.random.default_rng(i)) for i in range(300)]


def _words(sentence: str) -> list[str]:
    return [w for w in sentence.split() if w not in {".", ":", ",", "?"}]


def test_captions_have_8_to_20_words_and_name_what_is_drawn():
    rng = np.random.default_rng(0)
    for scene in SCENES:
        captions = text.captions(scene, rng, 6)
        assert len(set(captions)) == 6
        drawn_colours = {g.colour for g in scene.groups}
        for caption in captions:
            words = _words(caption)
            assert 8 <= len(words) <= 20, caption
            assert {w for w in words if w in COLOURS} == drawn_colours
            assert scene.groups[0].shape in caption


def test_captions_differ_between_images():
    rng = np.random.default_rng(0)
    first = {text.captions(s, rng, 6)[0] for s in SCENES}
    assert len(first) > 250


def test_answers_are_right():
    rng = np.random.default_rng(1)
    for scene in SCENES[:100]:
        for qa in text.questions(scene, rng, 8):
            if qa.question == "how many shapes are there ?":
                assert qa.answer == COUNT_WORDS[scene.total]
            elif qa.question.startswith("what colour"):
                assert qa.answer in {g.colour for g in scene.groups}
            elif qa.question.startswith("what shape"):
                assert qa.answer in {g.shape for g in scene.groups}
            elif qa.question.startswith("what pattern"):
                assert qa.answer == scene.pattern and qa.answer in PATTERNS
            elif qa.question.startswith("is there a"):
                colour, shape = _words(qa.question)[3:5]
                present = any((g.colour, g.shape) == (colour, shape) for g in scene.groups)
                assert qa.answer == ("yes" if present else "no")
            assert qa.answer in text.ANSWER_POOL and qa.dialog_answer in text.ANSWER_POOL


def test_dialog_rounds_have_100_distinct_candidates():
    rng = np.random.default_rng(2)
    for scene in SCENES[:50]:
        for rnd in text.dialog(scene, rng, 5):
            assert len(rnd.candidates) == 100 == len(set(rnd.candidates))
            assert rnd.candidates[rnd.gt_index] == rnd.answer


def test_long_description_has_40_tokens_or_more():
    tok = default_tokenizer()
    lengths = [len(tok(text.long_description(s), add_special_tokens=False).input_ids) for s in SCENES]
    assert min(lengths) >= 40


def test_vocabulary_is_small_and_every_word_is_one_token():
    rng = np.random.default_rng(3)
    vocab = set()
    for scene in SCENES:
        sentences = [*text.captions(scene, rng, 6), text.long_description(scene),
                     *(f"{qa.question} {qa.answer} {qa.dialog_answer}" for qa in text.questions(scene, rng, 8))]
        vocab |= set(" ".join(sentences).split())
    assert 60 <= len(vocab) <= 200
    tok = default_tokenizer()
    assert all(len(tok(" " + w, add_special_tokens=False).input_ids) == 1 for w in vocab)


@pytest.mark.parametrize("n", [0, 7])
def test_caption_count_is_checked(n):
    with pytest.raises(ValueError, match="captions_per_image"):
        text.captions(SCENES[0], np.random.default_rng(0), n)
