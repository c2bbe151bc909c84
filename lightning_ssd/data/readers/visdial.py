"""VisDial v1.0 dialogs: one record per round, with the caption and earlier rounds as history."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, index_images_by_id, nonempty, parse_entries, read_json
from lightning_ssd.data.readers.base import Record

DATASET = "VisDial v1.0"
NUM_OPTIONS = 100


def _question(text: str) -> str:
    # VisDial stores questions without their question mark.
    return text if text.endswith("?") else f"{text}?"


def load_visdial(dialog_file: Path, image_dirs: list[Path], *, skip_bad: bool = False,
                 dataset: str = DATASET) -> list[Record]:
    """One record per dialog round.

    Args:
        dialog_file: ``visdial_1.0_<split>.json``: ``data.questions``, ``data.answers`` (string tables)
            and ``data.dialogs[]`` with ``image_id``, ``caption`` and ``dialog[]`` rounds of ``question``,
            ``answer``, ``answer_options`` (100 indices) and ``gt_index``. In the test split only the last
            round of each dialog is asked, without answer or ``gt_index``.
        image_dirs: folders searched for ``..._<12-digit image id>.jpg`` (train: ``train2014/`` and
            ``val2014/``; val: ``VisualDialog_val2018/``; test: ``VisualDialog_test2018/``).
        skip_bad: skip (and count in the log) dialogs with a missing key, a bad index or no image.
        dataset: the benchmark's name in messages (the synthetic benchmark reuses this reader).
    """
    raw = read_json(dialog_file, dataset)
    try:
        data = raw["data"]
        questions, answers, dialogs = data["questions"], data["answers"], data["dialogs"]
    except (KeyError, TypeError) as e:
        raise MalformedDataError(f"{dataset}: {dialog_file} lacks data.questions, data.answers or data.dialogs "
                                 f"({e}); is it a VisDial v1.0 file?") from e
    images = index_images_by_id(image_dirs)

    def parse(entry: dict[str, Any]) -> list[Record]:
        image_id = int(entry["image_id"])
        if image_id not in images:
            raise FileNotFoundError(f"no image with id {image_id} in {', '.join(map(str, image_dirs))}")
        caption = nonempty(entry["caption"], "caption")
        history: list[tuple[str, str]] = []
        records = []
        for r, turn in enumerate(entry["dialog"]):
            question = _question(nonempty(questions[turn["question"]], "question"))
            answer = answers[turn["answer"]] if "answer" in turn else None
            options = turn.get("answer_options")
            if options is not None:
                if len(options) != NUM_OPTIONS:
                    raise ValueError(f"round {r} has {len(options)} answer_options, expected {NUM_OPTIONS}")
                gt_index = turn.get("gt_index")
                if gt_index is not None and not 0 <= gt_index < NUM_OPTIONS:
                    raise ValueError(f"round {r} gt_index {gt_index} is out of range")
                records.append(Record(images[image_id], f"{image_id}-{r}", query=question, target=answer,
                                      references=(answer,) if answer is not None else (), context=caption,
                                      history=tuple(history), candidates=tuple(answers[i] for i in options),
                                      gt_index=gt_index))
            if answer is not None:
                history.append((question, answer))
        return records

    records = parse_entries(dialogs, parse, dataset=dataset, file=dialog_file, skip_bad=skip_bad,
                            describe=lambda e: f"image_id {e.get('image_id')!r}" if isinstance(e, dict)
                            else repr(e)[:80])
    if not records:
        raise MalformedDataError(f"{dataset}: {dialog_file} has no usable dialog rounds")
    return records
