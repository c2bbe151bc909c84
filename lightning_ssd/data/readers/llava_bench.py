"""LLaVA-Bench (In-the-Wild): 60 questions on 24 images, with GPT-4 reference answers. Evaluation only."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, existing_image, nonempty, parse_entries, read_jsonl
from lightning_ssd.data.readers.base import Record

DATASET = "LLaVA-Bench (In-the-Wild)"


def load_llava_bench(questions_file: Path, answers_file: Path, image_dir: Path, *,
                     skip_bad: bool = False) -> list[Record]:
    """One record per question, the GPT-4 answer as reference and target.

    Args:
        questions_file: ``questions.jsonl``, lines ``{question_id, image, text, category}``.
        answers_file: ``answers_gpt4.jsonl``, lines ``{question_id, text, ...}``.
        image_dir: ``images/``.
        skip_bad: skip (and count in the log) questions with a missing key, answer or image.
    """
    answers = {row["question_id"]: row for row in read_jsonl(answers_file, DATASET)
               if isinstance(row, dict) and "question_id" in row}

    def parse(entry: dict[str, Any]) -> list[Record]:
        if entry["question_id"] not in answers:
            raise KeyError(f"question_id {entry['question_id']} has no line in {answers_file.name}")
        answer = nonempty(answers[entry["question_id"]]["text"], "text")
        path = existing_image(image_dir / entry["image"])
        return [Record(path, entry["question_id"], query=nonempty(entry["text"], "text"), target=answer,
                       references=(answer,))]

    records = parse_entries(read_jsonl(questions_file, DATASET), parse, dataset=DATASET, file=questions_file,
                            skip_bad=skip_bad, describe=lambda e: f"question_id {e.get('question_id')!r}"
                            if isinstance(e, dict) else repr(e)[:80])
    if not records:
        raise MalformedDataError(f"{DATASET}: {questions_file} has no usable questions")
    return records
