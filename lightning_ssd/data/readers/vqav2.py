"""VQAv2 (open-ended questions + annotations over COCO images)."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, index_images_by_id, nonempty, parse_entries, read_json
from lightning_ssd.data.readers.base import Record

DATASET = "VQAv2"


def load_vqav2(questions_file: Path, annotations_file: Path | None, image_dir: Path, *,
               skip_bad: bool = False, dataset: str = DATASET) -> list[Record]:
    """One record per question; the 10 human answers as references, ``multiple_choice_answer`` as target.

    Args:
        questions_file: ``v2_OpenEnded_mscoco_<split>_questions.json``: ``questions[]`` with ``image_id``,
            ``question``, ``question_id``.
        annotations_file: ``v2_mscoco_<split>_annotations.json``: ``annotations[]`` with ``question_id``,
            ``answers[].answer``, ``multiple_choice_answer``; None for test-dev (no answers).
        image_dir: the COCO image folder of the split (``val2014/``), files named ``..._<12-digit id>.jpg``.
        skip_bad: skip (and count in the log) questions without an answer entry, image or needed key.
        dataset: the benchmark's name in messages (the synthetic benchmark reuses this reader).
    """
    questions = read_json(questions_file, dataset)
    if not isinstance(questions, dict) or not isinstance(questions.get("questions"), list):
        raise MalformedDataError(f"{dataset}: {questions_file} has no 'questions' list")
    answers: dict[int, dict[str, Any]] = {}
    if annotations_file is not None:
        annotations = read_json(annotations_file, dataset)
        if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
            raise MalformedDataError(f"{dataset}: {annotations_file} has no 'annotations' list")
        answers = {a["question_id"]: a for a in annotations["annotations"]
                   if isinstance(a, dict) and "question_id" in a}
    images = index_images_by_id([image_dir])

    def parse(entry: dict[str, Any]) -> list[Record]:
        image_id = int(entry["image_id"])
        if image_id not in images:
            raise FileNotFoundError(f"no image with id {image_id} in {image_dir}")
        question = nonempty(entry["question"], "question")
        if annotations_file is None:
            return [Record(images[image_id], entry["question_id"], query=question)]
        annotation = answers.get(entry["question_id"])
        if annotation is None:
            raise KeyError(f"question_id {entry['question_id']} has no entry in {annotations_file.name}")
        refs = tuple(nonempty(a["answer"], "answers[].answer") for a in annotation["answers"])
        target = nonempty(annotation["multiple_choice_answer"], "multiple_choice_answer")
        return [Record(images[image_id], entry["question_id"], query=question, target=target, references=refs)]

    records = parse_entries(questions["questions"], parse, dataset=dataset, file=questions_file, skip_bad=skip_bad,
                            describe=lambda e: f"question_id {e.get('question_id')!r}" if isinstance(e, dict)
                            else repr(e)[:80])
    if not records:
        raise MalformedDataError(f"{dataset}: {questions_file} has no usable questions")
    return records
