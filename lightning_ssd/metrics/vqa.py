"""VQA accuracy with the official answer normalisation, and normalised exact match.

Both return a percentage (0-100), as the official VQA evaluation reports it.
"""

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

# Punctuation of the official VQA evaluation (PythonEvaluationTools/vqaEvaluation/vqaEval.py).
_PUNCTUATION = (";", ":", "/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`", ",", "?")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern starts with "(?!<=\d)", a misspelt look-behind that never matches anything, so in effect a
# period is removed unless a digit follows it ("3.5" stays, "yes." and "1." lose it). Kept as it behaves.
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset({"a", "an", "the"})
# Canonical forms of the official contraction table. Each maps from every spelling with exactly one of its
# apostrophes left out ("dont" -> "don't"; "couldnt've" and "couldn'tve" -> "couldn't've"). The official
# file has some of these with typographic apostrophes; the straight ones here are those of the VQA challenge
# server's copy. "I'd've" and friends start with a capital, so like the official table they never match a
# lower-cased answer.
_CONTRACTED = """
    ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd he'd've
    he's how'd how'll how's I'd've I'm I've isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't
    must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've
    somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll
    that's there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've
    weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll
    why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
"""
_CONTRACTIONS = {
    form[:i] + form[i + 1 :]: form for form in _CONTRACTED.split() for i, ch in enumerate(form) if ch == "'"
}
# The one entry of the official table that runs the other way.
_CONTRACTIONS["somebody'd"] = "somebodyd"


def normalize_vqa_answer(answer: str) -> str:
    """Normalises an answer as the official VQA evaluation does.

    1. Line breaks and tabs become spaces; the ends are stripped.
    2. Each punctuation mark is deleted if the text has it next to a space or contains a digit-comma-digit
       ("1,000"), otherwise replaced by a space ("yes/no" -> "yes no"). Periods are deleted unless a digit
       follows.
    3. Lower-cased; number words up to ten become digits ("two" -> "2", "none" -> "0"); the articles
       "a", "an", "the" are dropped; contractions missing their apostrophe get it back ("dont" -> "don't").
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for mark in _PUNCTUATION:
        glued = mark + " " in text or " " + mark in text or _DIGIT_COMMA_DIGIT.search(text) is not None
        out = out.replace(mark, "" if glued else " ")
    out = _PERIOD.sub("", out)
    words = (_NUMBER_WORDS.get(w, w) for w in out.lower().split())
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction against the human answers (usually 10), in [0, 1].

    For each human answer left out, the prediction scores min(#matches among the others / 3, 1); the
    result is the mean over the left-out answers. With 10 answers, 0/1/2/3+ matches give 0/0.3/0.6/0.9/1.0
    (three matches: 3 subsets with 2 matches, 7 with 3 -> (3 * 2/3 + 7) / 10).

    Unlike the official script, the human answers go through the full normalisation too: the official one
    only strips their punctuation, and only when they disagree, because the annotation files hold answers
    that are already normalised; on those, both give the same result.
    """
    if not answers:
        raise ValueError("vqa_accuracy: a question needs at least one reference answer")
    pred = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(a) == pred for a in answers]
    total = sum(matches)
    return sum(min((total - m) / 3, 1.0) for m in matches) / len(matches)


class _MeanScore(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def _add(self, scores: list[float]) -> None:
        self.score_sum += sum(scores)
        self.total += len(scores)

    def compute(self) -> Tensor:
        if self.total == 0:
            raise ValueError(f"{type(self).__name__}.compute: no samples; call update() first")
        return (100.0 * self.score_sum / self.total).float()


class VQAAccuracy(_MeanScore):
    """Official VQA accuracy (VQA v2: 10 human answers per question), as a percentage.

    Answers are normalised with :func:`normalize_vqa_answer`; see :func:`vqa_accuracy` for the score. The
    states are two sums, so DDP needs no string gathering.

    Example:
        >>> metric = VQAAccuracy()
        >>> metric.update(["Two."], [["2"] * 3 + ["3"] * 7])
        >>> round(metric.compute().item(), 2)
        90.0
    """

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Adds predicted answers and, for each, the list of human answers."""
        _check_pairs(self, preds, targets)
        self._add([vqa_accuracy(p, answers) for p, answers in zip(preds, targets, strict=True)])


class ExactMatch(_MeanScore):
    """Percentage of predictions equal to their single reference answer after VQA normalisation.

    Meant for datasets with one answer per question (such as the embedded synthetic VQA set).

    Example:
        >>> metric = ExactMatch()
        >>> metric.update(["The red one.", "blue"], ["red one", "green"])
        >>> metric.compute().item()
        50.0
    """

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        """Adds predicted answers and their reference answers."""
        _check_pairs(self, preds, targets)
        self._add(
            [float(normalize_vqa_answer(p) == normalize_vqa_answer(t)) for p, t in zip(preds, targets, strict=True)]
        )


def _check_pairs(metric: Metric, preds: Sequence[str], targets: Sequence[Any]) -> None:
    name = type(metric).__name__
    if isinstance(preds, str) or isinstance(targets, str):
        raise TypeError(f"{name}.update: preds and targets must be lists, one entry per question, not one string")
    if len(preds) != len(targets):
        raise ValueError(f"{name}.update: {len(preds)} predictions but {len(targets)} targets")
