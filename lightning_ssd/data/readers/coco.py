"""COCO captions with the Karpathy split (``dataset_coco.json``), as used by BLIP-2 and LAVIS."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, existing_image, nonempty, parse_entries, read_json
from lightning_ssd.data.readers.base import Record

DATASET = "COCO Karpathy"
# Karpathy's "restval" images (the rest of COCO val2014) are training data, as in every captioning paper.
KARPATHY_SPLITS: dict[str, tuple[str, ...]] = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


def load_karpathy(annotation_file: Path, image_root: Path, split: str, *, train_pairs: bool,
                  skip_bad: bool = False, dataset: str = DATASET) -> list[Record]:
    """Records of one Karpathy split.

    Args:
        annotation_file: ``dataset_coco.json``: ``images[]`` with ``filepath``, ``filename``, ``split``,
            ``sentences[].raw`` and ``cocoid``.
        image_root: folder holding ``train2014/`` and ``val2014/`` (the ``filepath`` values).
        split: "train", "val" or "test".
        train_pairs: one record per (image, caption) pair, the caption as target (an epoch sees every
            caption once); otherwise one record per image, its captions as references and the first as target.
        skip_bad: skip (and count in the log) entries with a missing key, an empty caption or a missing
            image file, instead of raising.
        dataset: the benchmark's name in messages (the synthetic benchmark reuses this reader).
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split must be one of {list(KARPATHY_SPLITS)}, got {split!r}")
    data = read_json(annotation_file, dataset)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise MalformedDataError(
            f"{dataset}: {annotation_file} has no 'images' list; is it Karpathy's dataset_coco.json?"
        )
    wanted = KARPATHY_SPLITS[split]

    def parse(entry: dict[str, Any]) -> list[Record]:
        if entry["split"] not in wanted:
            return []
        path = existing_image(image_root / entry["filepath"] / entry["filename"])
        captions = tuple(nonempty(s["raw"], "sentences[].raw") for s in entry["sentences"])
        if not captions:
            raise ValueError("'sentences' is empty")
        image_id = int(entry["cocoid"])
        if train_pairs:
            return [Record(path, f"{image_id}-{j}", target=c, references=captions) for j, c in enumerate(captions)]
        return [Record(path, image_id, target=captions[0], references=captions)]

    records = parse_entries(data["images"], parse, dataset=dataset, file=annotation_file, skip_bad=skip_bad,
                            describe=lambda e: f"cocoid {e.get('cocoid')!r}" if isinstance(e, dict) else repr(e)[:80])
    if not records:
        raise MalformedDataError(f"{dataset}: {annotation_file} has no usable images with split in {list(wanted)}; "
                                 "check that it is the full Karpathy dataset_coco.json")
    return records
