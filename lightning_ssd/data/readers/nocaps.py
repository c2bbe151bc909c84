"""NoCaps validation/test (COCO-style captions file over Open Images), zero-shot evaluation only."""

from collections import defaultdict
from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, existing_image, nonempty, parse_entries, read_json
from lightning_ssd.data.readers.base import Record

DATASET = "NoCaps"


def load_nocaps(annotation_file: Path, image_dir: Path, *, skip_bad: bool = False) -> list[Record]:
    """One record per image; its 10 captions as references (none for the test split's image-info file).

    Args:
        annotation_file: ``nocaps_val_4500_captions.json``: ``images[]`` (``id``, ``file_name``, ``domain``)
            and ``annotations[]`` (``image_id``, ``caption``); ``nocaps_test_image_info.json`` has no annotations.
        image_dir: folder holding the images named by ``file_name``.
        skip_bad: skip (and count in the log) entries with a missing key, an empty caption or image file.
    """
    data = read_json(annotation_file, DATASET)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise MalformedDataError(f"{DATASET}: {annotation_file} has no 'images' list")
    captions: dict[int, list[str]] = defaultdict(list)

    def parse_caption(entry: dict[str, Any]) -> list[None]:
        captions[int(entry["image_id"])].append(nonempty(entry["caption"], "caption"))
        return []

    parse_entries(data.get("annotations", []), parse_caption, dataset=DATASET, file=annotation_file, skip_bad=skip_bad)

    def parse_image(entry: dict[str, Any]) -> list[Record]:
        refs = tuple(captions.get(int(entry["id"]), ()))
        if "annotations" in data and not refs:
            raise ValueError(f"image {entry['id']} has no caption in 'annotations'")
        path = existing_image(image_dir / entry["file_name"])
        return [Record(path, int(entry["id"]), target=refs[0] if refs else None, references=refs)]

    records = parse_entries(data["images"], parse_image, dataset=DATASET, file=annotation_file, skip_bad=skip_bad,
                            describe=lambda e: f"id {e.get('id')!r}" if isinstance(e, dict) else repr(e)[:80])
    if not records:
        raise MalformedDataError(f"{DATASET}: {annotation_file} has no usable images")
    return records
