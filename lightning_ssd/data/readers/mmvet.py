"""MM-Vet v1: 218 open-ended questions over 200 images. Evaluation only."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, existing_image, nonempty, parse_entries, read_json
from lightning_ssd.data.readers.base import Record

DATASET = "MM-Vet"


def load_mmvet(annotation_file: Path, image_dir: Path, *, skip_bad: bool = False) -> list[Record]:
    """One record per question; the human-written answer (with its <AND>/<OR> markup) as reference.

    Args:
        annotation_file: ``mm-vet.json``: ``{"v1_0": {imagename, question, answer, capability}, ...}``.
        image_dir: ``images/``.
        skip_bad: skip (and count in the log) questions with a missing key or image.
    """
    data = read_json(annotation_file, DATASET)
    if not isinstance(data, dict):
        raise MalformedDataError(f"{DATASET}: {annotation_file} must hold a JSON object keyed by question id")

    def parse(item: tuple[str, dict[str, Any]]) -> list[Record]:
        key, entry = item
        answer = nonempty(entry["answer"], "answer")
        path = existing_image(image_dir / entry["imagename"])
        return [Record(path, key, query=nonempty(entry["question"], "question"), target=answer, references=(answer,))]

    records = parse_entries(data.items(), parse, dataset=DATASET, file=annotation_file, skip_bad=skip_bad,
                            describe=lambda item: repr(item[0]))
    if not records:
        raise MalformedDataError(f"{DATASET}: {annotation_file} has no usable questions")
    return records
