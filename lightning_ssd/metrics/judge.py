"""LLM-judged scores for open-ended benchmarks (MM-Vet, LLaVA-Bench-in-the-wild), with a pluggable judge.

The judge (the chat model and its client) is in `judge_client.py`; this module holds the prompts, the parsing of
the replies and the metric.

Without a judge, :class:`JudgedScore` still collects the samples and reports ``needs_judge=True`` and no
number, so generation and speed measurements run on their own and the answers can be judged later.
"""

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch.distributed as dist

from lightning_ssd.metrics._text_records import TextRecordMetric
from lightning_ssd.metrics.judge_client import ChatJudge, JudgeError, JudgeRequestError, Messages

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class _Sample:
    question: str
    prediction: str
    reference: str
    category: str = ""
    context: str = ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


_MMVET_PROMPT = """\
Grade a model's answer to a question about an image by comparing it with the ground truth.
In the ground truth, <AND> joins parts that must all be in the answer for full marks, and <OR> joins \
alternatives of which any one is enough. Give partial credit for partly correct answers.
The correctness is one of 0.0 (wrong), 0.1, 0.2, ..., 0.9, 1.0 (fully correct). Fill in the last cell \
of the table with the correctness only.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
How much is 12 + 7? | 19 | 12 + 7 = 19 | 1.0
How much is 12 + 7? | 19 | The sum is 21. | 0.0
Which animals are on the sofa? | dog <AND> cat | A dog is lying on the sofa. | 0.5
What is written on the mug? | coffee <OR> coffee time | The mug reads "Coffee". | 1.0
Why is the road wet? | it rained | It seems someone washed the street, or maybe it rained. | 0.6
"""


def _mmvet_messages(sample: _Sample) -> Messages:
    row = f"{_cell(sample.question)} | {_cell(sample.reference)} | {_cell(sample.prediction)} |"
    return [{"role": "user", "content": _MMVET_PROMPT + row}]


def _parse_mmvet(reply: str) -> tuple[float, ...]:
    try:
        score = float(reply.strip())
    except ValueError:
        raise JudgeRequestError(f"MM-Vet judge reply is not a number: {reply[:200]!r}") from None
    if not 0.0 <= score <= 1.0:
        raise JudgeRequestError(f"MM-Vet judge score {score} is outside [0, 1]")
    return (score,)


_LLAVA_SYSTEM = "You review answers of AI assistants about images, carefully and impartially."
_LLAVA_INSTRUCTIONS = """\
[Instructions]
Two AI assistants answered the question above about an image that you cannot see{context_note}. Judge each \
answer for helpfulness, relevance, accuracy and level of detail, and give it an overall score from 1 to 10, \
higher meaning better. Write the two scores, Assistant 1's first, separated by a space, alone on the first \
line. From the second line on, explain the scores briefly. The order of the two answers must not sway you."""


def _llava_messages(sample: _Sample) -> Messages:
    parts = [f"[Context]\n{sample.context}\n"] if sample.context else []
    parts += [
        f"[Question]\n{sample.question}\n",
        f"[Assistant 1]\n{sample.reference}\n[End of Assistant 1]\n",
        f"[Assistant 2]\n{sample.prediction}\n[End of Assistant 2]\n",
        _LLAVA_INSTRUCTIONS.format(context_note="; the context describes it" if sample.context else ""),
    ]
    return [{"role": "system", "content": _LLAVA_SYSTEM}, {"role": "user", "content": "\n".join(parts)}]


def _parse_llava(reply: str) -> tuple[float, ...]:
    first = reply.strip().split("\n")[0].replace(",", " ").split()
    try:
        scores = tuple(float(s) for s in first)
    except ValueError:
        scores = ()
    if len(scores) != 2 or not all(0.0 <= s <= 10.0 for s in scores):
        raise JudgeRequestError(f"LLaVA-Bench judge reply does not start with two scores in [0, 10]: {reply[:200]!r}")
    return scores


def _mean_score(scores: list[tuple[float, ...]]) -> float:
    return 100.0 * sum(s[0] for s in scores) / len(scores)


def _relative_score(scores: list[tuple[float, ...]]) -> float | None:
    reference = sum(s[0] for s in scores)
    return 100.0 * sum(s[1] for s in scores) / reference if reference > 0 else None


@dataclass(frozen=True)
class _Task:
    messages: Callable[[_Sample], Messages]
    parse: Callable[[str], tuple[float, ...]]
    aggregate: Callable[[list[tuple[float, ...]]], float | None]


_TASKS = {
    "mm-vet": _Task(_mmvet_messages, _parse_mmvet, _mean_score),
    "llava-wild": _Task(_llava_messages, _parse_llava, _relative_score),
}


class JudgedScore(TextRecordMetric):
    """Open-ended answers scored by an LLM judge: MM-Vet or LLaVA-Bench-in-the-wild.

    ``mm-vet``: the judge grades each prediction against the ground truth from 0.0 to 1.0; the score is
    the mean x100. ``llava-wild``: the judge scores the reference answer (Assistant 1) and the prediction
    (Assistant 2) from 1 to 10; the score is mean(prediction) / mean(reference) x100. Prompts follow the
    official ones in form (table of graded examples; two scores on the first line) in our own wording, so
    numbers are comparable in kind, not digit for digit, to the papers'.

    Samples are strings gathered over DDP ranks; with DDP, rank 0 alone calls the judge and broadcasts the
    outcome, so each sample costs one request.

    Args:
        task: ``"mm-vet"`` or ``"llava-wild"``.
        judge: the chat model that judges; None to collect only (``compute()`` then reports ``needs_judge``).
        max_attempts: tries per sample when a request fails or the reply does not parse.
        retry_wait_s: pause before a retry, doubled at each further one.
        num_workers: requests in flight at once.
        **kwargs: passed to ``torchmetrics.Metric``.
    """

    def __init__(
        self,
        task: Literal["mm-vet", "llava-wild"],
        judge: ChatJudge | None = None,
        max_attempts: int = 3,
        retry_wait_s: float = 1.0,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task not in _TASKS:
            raise ValueError(f"JudgedScore: task must be one of {sorted(_TASKS)}, got {task!r}")
        if max_attempts < 1 or num_workers < 1:
            raise ValueError(
                f"JudgedScore: max_attempts and num_workers must be >= 1, got {max_attempts}, {num_workers}"
            )
        self.task = task
        self.judge = judge
        self.max_attempts = max_attempts
        self.retry_wait_s = retry_wait_s
        self.num_workers = num_workers

    def update(
        self,
        questions: Sequence[str],
        preds: Sequence[str],
        references: Sequence[str],
        categories: Sequence[str] | None = None,
        contexts: Sequence[str] | None = None,
    ) -> None:
        """Adds questions, predicted answers and reference answers, one entry per sample.

        ``categories`` (MM-Vet capabilities, LLaVA-Bench question types) get their own scores in
        ``per_category``. ``contexts`` are text descriptions of the images (LLaVA-Bench's captions); the
        judge cannot see the image, so for ``llava-wild`` they are shown to it, as in the official protocol.
        """
        columns = {"questions": questions, "preds": preds, "references": references}
        columns["categories"] = [""] * len(preds) if categories is None else categories
        columns["contexts"] = [""] * len(preds) if contexts is None else contexts
        for name, column in columns.items():
            if isinstance(column, str) or len(column) != len(preds):
                raise ValueError(f"JudgedScore.update: {name} must be a list of {len(preds)} strings, like preds")
        self._append_records([list(row) for row in zip(*columns.values(), strict=True)])

    def compute(self) -> dict[str, Any]:
        """Judges all samples.

        Returns:
            Without a judge: ``{"needs_judge": True, "num_samples": n}``. With one: ``needs_judge`` (False),
            ``score`` (None if no sample could be judged), ``per_category`` (category -> score, for
            non-empty categories), ``num_samples``, ``num_judged``, ``num_failed`` and ``failures``
            (``{"index", "error"}`` per failed sample, in gathered order).
        """
        samples = [_Sample(*record) for record in self._records()]
        if not samples:
            raise ValueError("JudgedScore.compute: no samples; call update() first")
        if self.judge is None:
            log.warning(
                "JudgedScore(%s): no judge configured; %d answers collected, not scored", self.task, len(samples)
            )
            return {"needs_judge": True, "num_samples": len(samples)}
        outcomes = self._on_rank_zero(lambda: self._judge_all(samples))
        judged = [(s, o) for s, o in zip(samples, outcomes, strict=True) if not isinstance(o, str)]
        aggregate = _TASKS[self.task].aggregate
        categories = sorted({s.category for s, _ in judged if s.category})
        return {
            "needs_judge": False,
            "score": aggregate([o for _, o in judged]) if judged else None,
            "per_category": {c: aggregate([o for s, o in judged if s.category == c]) for c in categories},
            "num_samples": len(samples),
            "num_judged": len(judged),
            "num_failed": len(samples) - len(judged),
            "failures": [{"index": i, "error": o} for i, o in enumerate(outcomes) if isinstance(o, str)],
        }

    def _judge_all(self, samples: list[_Sample]) -> list[tuple[float, ...] | str]:
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
            futures = [pool.submit(self._judge_one, sample) for sample in samples]
            try:
                return [future.result() for future in futures]
            except JudgeError:
                pool.shutdown(cancel_futures=True)  # no point sending the rest
                raise

    def _judge_one(self, sample: _Sample) -> tuple[float, ...] | str:
        """The parsed scores, or the last error as text."""
        task = _TASKS[self.task]
        error = ""
        for attempt in range(self.max_attempts):
            if attempt:
                time.sleep(self.retry_wait_s * 2 ** (attempt - 1))
            try:
                return task.parse(self.judge.complete(task.messages(sample)))
            except JudgeRequestError as err:
                error = str(err)
        return error

    def _on_rank_zero(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on the first rank of the process group and gives every rank its result (or its error)."""
        if not (self.sync_on_compute and dist.is_available() and dist.is_initialized()):
            return fn()
        group = self.process_group
        src = 0 if group is None else dist.get_global_rank(group, 0)
        payload: list[Any] = [None]
        if dist.get_rank() == src:
            try:
                payload = [(fn(), None)]
            except Exception as err:
                # Tell the other ranks, which wait in the broadcast, then fail here with the original error.
                dist.broadcast_object_list([(None, f"{type(err).__name__}: {err}")], src=src, group=group)
                raise
        dist.broadcast_object_list(payload, src=src, group=group)
        value, error = payload[0]
        if error is not None:
            raise RuntimeError(f"JudgedScore: judging failed on rank {src}: {error}")
        return value
