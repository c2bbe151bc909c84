"""A user's own images: a folder (searched recursively), a glob pattern, or a JSONL of {"image", "prompt", "id"}."""

from __future__ import annotations

import glob
from dataclasses import replace
from pathlib import Path

from lightning_ssd.data.io import DatasetFileError, MalformedDataError, existing_image, parse_entries, read_jsonl
from lightning_ssd.data.prompts import CAPTION_INSTRUCTION
from lightning_ssd.data.readers.base import Record

DATASET = "images"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(spec: str | Path, source: str = DATASET) -> list[Path]:
    """Image files of a folder (recursive) or of a glob pattern, sorted; other files are ignored. Errors start with
    `source`, the name of the setting that gave `spec`."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.rglob("*") if is_image_file(p)]
    elif glob.has_magic(str(spec)):
        found = [Path(p) for p in glob.glob(str(spec), recursive=True) if is_image_file(Path(p))]
    else:
        what = "is a file but not a .jsonl" if path.exists() else "does not exist"
        raise DatasetFileError(f"{source}: {spec} {what}; give a folder of images, a glob pattern or a .jsonl file of "
                               "{\"image\": path} lines")
    if not found:
        raise DatasetFileError(f"{source}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}, any case) "
                               f"found in {spec}")
    return sorted(found)


def _jsonl_records(path: Path, prompt: str | None, skip_bad: bool, require_images: bool, source: str) -> list[Record]:
    def parse(row: object) -> list[Record]:
        if not isinstance(row, dict):
            raise TypeError("each line must be a JSON object with an \"image\" key")
        image = Path(row["image"])
        image = image if image.is_absolute() else path.parent / image
        text = row.get("prompt", prompt)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError("'prompt' is empty or not a string")
        image = existing_image(image) if require_images else image
        return [Record(image=image, sample_id=row.get("id", str(row["image"])), query=text)]

    skip_setting = "skip_bad_samples: true" if source == DATASET else None  # the tools have no such flag
    return parse_entries(read_jsonl(path, source, fix="fix or remove that line"), parse, dataset=source, file=path,
                         skip_bad=skip_bad, skip_setting=skip_setting)


def load_image_records(
    spec: str | Path, prompt: str | None = None, skip_bad: bool = False, require_images: bool = True,
    source: str = DATASET,
) -> list[Record]:
    """Records of a user's images: `spec` is a folder, a glob or a .jsonl file; `prompt` is the instruction for
    every image (a JSONL row's own "prompt" wins). A record's query is the prompt it was given, None for an image to
    caption (see `with_instruction` for decoding them). `require_images=False` leaves a JSONL row's missing image to
    be found when it is read. Errors start with `source`, the setting that gave `spec`."""
    path = Path(spec)
    if path.suffix.lower() == ".jsonl":
        if not path.is_file():
            raise DatasetFileError(f"{source}: {path} not found")
        records = _jsonl_records(path, prompt, skip_bad, require_images, source)
        if not records:
            raise MalformedDataError(f"{source}: {path} holds no usable entries")
    else:
        root = path if path.is_dir() else None
        records = [Record(image=p, sample_id=str(p.relative_to(root)) if root else str(p), query=prompt)
                   for p in find_images(spec, source)]
    return records


def with_instruction(records: list[Record]) -> list[Record]:
    """The records as decoded: where only some have a prompt, the others get the one-sentence caption instruction,
    since one batch is decoded with one task; without any prompt they are captioned as they are."""
    if task_of(records) == "caption":
        return records
    return [r if r.query else replace(r, query=CAPTION_INSTRUCTION) for r in records]


def task_of(records: list[Record]) -> str:
    """"caption" when no record has a prompt, else "instruct"."""
    return "instruct" if any(r.query for r in records) else "caption"
