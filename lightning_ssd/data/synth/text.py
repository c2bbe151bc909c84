"""Texts of the embedded synthetic benchmark: captions, VQA pairs, VisDial rounds, long descriptions.

Every text is built from a handful of templates. The template words ("a photo of", "there are",
"on a ... background") are the same for every image, so a shallow layer predicts them; the slot
words (count, size, colour, shape, position, pattern) can only be read off the pixels, so they need
the deep layers. The vocabulary is closed: :func:`corpus_words` lists every word any text can use.
"""

from dataclasses import dataclass

import numpy as np

from lightning_ssd.data.synth.scene import (
    COLOURS,
    COUNT_WORDS,
    PATTERNS,
    PLURALS,
    POSITIONS,
    SHAPES,
    SIZES,
    Group,
    Scene,
)

NUM_CANDIDATES = 100


def _noun(group: Group) -> str:
    return group.shape if group.count == 1 else PLURALS[group.shape]


def _phrase(group: Group) -> str:
    article = "a" if group.count == 1 else COUNT_WORDS[group.count]
    return f"{article} {group.size} {group.colour} {_noun(group)}"


def _be(count: int) -> str:
    return "is" if count == 1 else "are"


def _objects(groups: tuple[Group, ...], with_position: bool = False) -> str:
    parts = [_phrase(g) + (f" {POSITIONS[g.position]}" if with_position else "") for g in groups]
    return " and ".join(parts)


def captions(scene: Scene, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` (at most 6) reference captions of 8-20 words, each from a different template."""
    g, bg = scene.groups, scene.pattern
    first = g[0]
    shapes = "shape" if scene.total == 1 else "shapes"
    templates = [
        f"a photo of {_objects(g)} on a {bg} background .",
        f"there {_be(first.count)} {_objects(g)} on a {bg} background .",
        f"a {bg} background with {_objects(g)} on it .",
        f"this picture shows {_objects(g, with_position=True)} .",
        f"an image of {_objects(g[::-1])} in front of a {bg} background .",
        f"{COUNT_WORDS[scene.total]} {shapes} on a {bg} background : {_objects(g)} .",
    ]
    if not 1 <= n <= len(templates):
        raise ValueError(f"captions_per_image must be in [1, {len(templates)}], got {n}")
    return [templates[i] for i in rng.permutation(len(templates))[:n]]


@dataclass(frozen=True)
class QA:
    """One question with its short (VQA) answer and its longer dialog answer."""

    question: str
    answer: str
    dialog_answer: str


def _qa_for(kind: str, scene: Scene, rng: np.random.Generator) -> QA:
    group = scene.groups[int(rng.integers(len(scene.groups)))]
    be, it = _be(group.count), "it" if group.count == 1 else "they"
    if kind == "count_all":
        n = COUNT_WORDS[scene.total]
        return QA("how many shapes are there ?", n, "there is one" if scene.total == 1 else f"there are {n}")
    if kind == "count_shape":
        present = {g.shape: g.count for g in scene.groups}
        shape = group.shape if rng.random() < 0.7 else SHAPES[int(rng.integers(len(SHAPES)))]
        count = present.get(shape, 0)
        dialog = {0: "there are none", 1: "there is one"}.get(count, f"there are {COUNT_WORDS[count]}")
        return QA(f"how many {PLURALS[shape]} are there ?", COUNT_WORDS[count], dialog)
    if kind == "colour":
        return QA(f"what colour {be} the {_noun(group)} ?", group.colour, f"{it} {be} {group.colour}")
    if kind == "shape":
        objects = "object" if group.count == 1 else "objects"
        dialog = f"it is a {group.shape}" if group.count == 1 else f"they are {PLURALS[group.shape]}"
        return QA(f"what shape {be} the {group.colour} {objects} ?", group.shape, dialog)
    if kind == "exists":
        shape = SHAPES[int(rng.integers(len(SHAPES)))] if rng.random() < 0.5 else group.shape
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))] if rng.random() < 0.5 else group.colour
        yes = any(g.shape == shape and g.colour == colour for g in scene.groups)
        dialog = "yes , there is" if yes else "no , there is not"
        return QA(f"is there a {colour} {shape} ?", "yes" if yes else "no", dialog)
    if kind == "position":
        return QA(f"where {be} the {group.colour} {_noun(group)} ?", group.position,
                  f"{it} {be} {POSITIONS[group.position]}")
    if kind == "size":
        return QA(f"{be} the {group.colour} {_noun(group)} small or large ?", group.size, f"{it} {be} {group.size}")
    if kind == "background":
        return QA("what pattern is the background ?", scene.pattern, f"it is {scene.pattern}")
    raise ValueError(f"unknown question kind {kind!r}")


QUESTION_KINDS: tuple[str, ...] = ("count_all", "count_shape", "colour", "shape", "exists", "position", "size",
                                   "background")


def questions(scene: Scene, rng: np.random.Generator, n: int) -> list[QA]:
    """``n`` question-answer pairs, of distinct kinds while ``n`` allows."""
    kinds = [QUESTION_KINDS[i] for i in rng.permutation(len(QUESTION_KINDS))]
    kinds = (kinds * (n // len(kinds) + 1))[:n]
    return [_qa_for(kind, scene, rng) for kind in kinds]


def _answer_pool() -> tuple[str, ...]:
    """Every answer a dialog round can have, short and long forms, plus colour-shape distractors."""
    short = [*COLOURS, *SHAPES, *COUNT_WORDS, "yes", "no", *POSITIONS, *SIZES, *PATTERNS]
    long = ["there is one", "there are none", *(f"there are {n}" for n in COUNT_WORDS[2:]),
            *(f"{s} {b} {c}" for c in COLOURS for s, b in (("it", "is"), ("they", "are"))),
            *(f"it is a {s}" for s in SHAPES), *(f"they are {PLURALS[s]}" for s in SHAPES),
            "yes , there is", "no , there is not",
            *(f"{s} {b} {p}" for p in POSITIONS.values() for s, b in (("it", "is"), ("they", "are"))),
            *(f"{s} {b} {z}" for z in SIZES for s, b in (("it", "is"), ("they", "are"))),
            *(f"it is {p}" for p in PATTERNS), *(f"a {c} {s}" for c in COLOURS for s in SHAPES)]
    return tuple(dict.fromkeys([*short, *long]))


ANSWER_POOL: tuple[str, ...] = _answer_pool()


@dataclass(frozen=True)
class DialogRound:
    """A VisDial round: question, ground-truth answer, 100 candidate answers and the answer's index in them."""

    question: str
    answer: str
    candidates: tuple[str, ...]
    gt_index: int


def dialog(scene: Scene, rng: np.random.Generator, rounds: int) -> list[DialogRound]:
    """``rounds`` VisDial-style rounds; each answer is in short or long form at random."""
    out = []
    for qa in questions(scene, rng, rounds):
        answer = qa.dialog_answer if rng.random() < 0.5 else qa.answer
        others = [a for a in ANSWER_POOL if a != answer]
        candidates = [others[i] for i in rng.choice(len(others), size=NUM_CANDIDATES - 1, replace=False)]
        gt_index = int(rng.integers(NUM_CANDIDATES))
        candidates.insert(gt_index, answer)
        out.append(DialogRound(qa.question, answer, tuple(candidates), gt_index))
    return out


def long_description(scene: Scene) -> str:
    """A detailed description of 40+ tokens: a summary, one sentence per group, the count, the background."""
    parts = [f"the image shows {_objects(scene.groups)} on a {scene.pattern} background ."]
    for g in scene.groups:
        be = _be(g.count)
        parts.append(f"the {g.colour} {_noun(g)} {be} {g.size} and {be} {POSITIONS[g.position]} .")
    shapes = "shape" if scene.total == 1 else "shapes"
    parts.append(f"in total there {_be(scene.total)} {COUNT_WORDS[scene.total]} {shapes} in the picture .")
    parts.append(f"the background is {scene.pattern} and the shapes do not touch each other .")
    return " ".join(parts)


def corpus_words() -> list[str]:
    """Every slot word the generator can emit, so a tokenizer trained on a sample never misses a rare one."""
    return [*COLOURS, *SHAPES, *PLURALS.values(), *SIZES, *PATTERNS, *COUNT_WORDS, *POSITIONS,
            *" ".join(POSITIONS.values()).split(), *" ".join(ANSWER_POOL).split()]
