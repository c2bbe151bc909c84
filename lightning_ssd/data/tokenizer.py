"""A small offline tokenizer for the tiny model presets.

Byte-level byte-pair encoding (GPT-2's pre-tokenisation: a word keeps its leading space, punctuation is
split off) over lower-cased text, trained until every corpus word is one token. Synthetic-benchmark
words map one-to-one to tokens, while any other text still encodes, byte by byte, instead of collapsing
to ``<unk>``; decoding restores the (lower-cased) text exactly. Encoding prepends ``<s>``; eos is
appended by the caller (the collate function), as the target needs it and the prompt must not have it.

The trained tokenizer ships with the package (``lightning_ssd/backbones/preset_tokenizer.json``, read by
``lightning_ssd.backbones.tokenizer``); ``python -m lightning_ssd.data.tokenizer`` trains it again and writes that
file.
"""

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from lightning_ssd.backbones.tokenizer import (
    BOS,
    EOS,
    IMAGE,
    PRESET_TOKENIZER_FILE,
    SPECIAL_TOKENS,
    UNK,
    preset_tokenizer,
    wrap_tokenizer,
)
from lightning_ssd.data.prompts import DETAIL_INSTRUCTION, build_prompt, prompt_vocabulary
from lightning_ssd.data.synth import text
from lightning_ssd.data.synth.scene import sample_scene

# Far above what the merges of the default corpus need, so training stops when every word is whole.
MAX_VOCAB = 8192
DEFAULT_CORPUS_SEED = 0
DEFAULT_CORPUS_SCENES = 400


def build_tokenizer(sentences: Iterable[str], padding_side: str = "right") -> PreTrainedTokenizerFast:
    """Train a tokenizer on ``sentences``, offline and deterministically.

    Args:
        sentences: training text; each of its words becomes one token (as written: with or without a leading
            space), unless the vocabulary reaches 8192 tokens first.
        padding_side: "right" or "left"; can also be passed per call (``tokenizer(..., padding_side=)``).

    Returns:
        A ``PreTrainedTokenizerFast`` with pad id 0, bos ``<s>``, eos ``</s>``, unk ``<unk>`` and the
        special token ``<image>`` (id 4).
    """
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=MAX_VOCAB, min_frequency=1, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(sentences, trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, backend.token_to_id(BOS))]
    )
    return wrap_tokenizer(backend, padding_side)


def default_corpus() -> list[str]:
    """The embedded benchmark's texts (seed 0) inside every family's prompts, plus its closed word list.

    Texts are placed in the prompts they are used with, so that words keep the spacing they have there
    (GPT-2-style tokens differ with and without a leading space).
    """
    rng = np.random.default_rng(DEFAULT_CORPUS_SEED)
    sentences: list[str] = []
    # The paper's families' templates: LLaVA-NeXT shares LLaVA's, and Qwen2.5-VL's markers are special tokens the
    # Qwen presets append (backbones/tokenizer.py), so the shipped tokenizer stays the one every preset was built on.
    families = ("blip2-opt", "blip2-t5", "llava")
    for i in range(DEFAULT_CORPUS_SCENES):
        scene = sample_scene(rng)
        caps, qas, rounds = text.captions(scene, rng, 6), text.questions(scene, rng, 8), text.dialog(scene, rng, 3)
        history = [(r.question, r.answer) for r in rounds[:-1]]
        family = families[i % len(families)]
        samples = [("caption", None, None, (), caps[0]),
                   ("vqa", qas[0].question, None, (), qas[0].answer),
                   ("visdial", rounds[-1].question, caps[1], history, rounds[-1].answer),
                   ("long", DETAIL_INSTRUCTION, None, (), text.long_description(scene))]
        for task, query, context, turns, target in samples:
            sentences.append(f"{build_prompt(family, task, query, context, turns, IMAGE, EOS)} {target}{EOS}")
        sentences += caps + [f"{qa.question} {qa.answer} {qa.dialog_answer}" for qa in qas]
    words = " ".join(text.corpus_words())
    return [*sentences, words, f"{words}\n{words}", *text.ANSWER_POOL, *prompt_vocabulary()]


def default_tokenizer(padding_side: str = "right") -> PreTrainedTokenizerFast:
    """The tiny presets' tokenizer, as shipped (the training of :func:`build_tokenizer` on :func:`default_corpus`).

    Its vocabulary (559 tokens) sizes a tiny model's embeddings. Each call returns an independent copy, so changing
    ``padding_side`` on one never affects another caller.
    """
    return preset_tokenizer(padding_side)


def train_default_tokenizer() -> str:
    """The presets' tokenizer trained anew, as the JSON that ships with the package."""
    return build_tokenizer(default_corpus()).backend_tokenizer.to_str(pretty=True)


def main() -> None:
    """Writes the shipped tokenizer file again from the training."""
    import lightning_ssd.backbones as backbones

    path = Path(backbones.__file__).parent / PRESET_TOKENIZER_FILE
    path.write_text(train_default_tokenizer() + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
