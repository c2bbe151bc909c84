"""Reading benchmark files: errors that name the file, the entry and the fix; bad-entry accounting."""

import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from lightning_ssd.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatasetFileError(UserError, FileNotFoundError):
    """A benchmark file or folder is missing where it is expected."""


class MalformedDataError(UserError, ValueError):
    """A benchmark file cannot be parsed, or one of its entries lacks what is needed."""


def require(path: Path, dataset: str, how_to_get: str) -> Path:
    """Return ``path`` if it exists, else raise an error naming it, the benchmark and where to get it."""
    if not path.exists():
        raise DatasetFileError(f"{dataset}: expected {path} but it does not exist. {how_to_get}")
    return path


def read_json(path: Path, dataset: str) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MalformedDataError(
            f"{dataset}: {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "the file is probably truncated: download it again"
        ) from e


def read_jsonl(path: Path, dataset: str, fix: str = "download the file again") -> list[Any]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise MalformedDataError(
                    f"{dataset}: {path} line {lineno} is not valid JSON ({e.msg}); {fix}"
                ) from e
    return rows


def load_image(path: Path) -> Image.Image:
    """Decode an image fully (so truncated files fail here, not in a worker later) as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")


_TRAILING_ID = re.compile(r"(\d+)\.\w+$")


def index_images_by_id(folders: Iterable[Path]) -> dict[int, Path]:
    """Map image ids to files named like COCO's ``COCO_val2014_000000123456.jpg`` (id = trailing digits)."""
    index: dict[int, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _TRAILING_ID.search(path.name)
            if match:
                index[int(match.group(1))] = path
    return index


def parse_entries(
    entries: Iterable[Any],
    parse: Callable[[Any], list[T]],
    *,
    dataset: str,
    file: Path,
    skip_bad: bool,
    describe: Callable[[Any], str] = lambda e: repr(e)[:120],
    skip_setting: str | None = "skip_bad_samples: true",
) -> list[T]:
    """Parse each entry of ``file`` with ``parse`` (which returns zero or more items).

    A ``KeyError``, ``TypeError``, ``ValueError``, ``IndexError`` or missing image file in ``parse``
    makes the entry bad: it raises a :class:`MalformedDataError` naming the file and the entry, or,
    with ``skip_bad``, the entry is skipped and the number of skipped entries logged once. The error suggests
    ``skip_setting`` (None: no such setting where the file was given).
    """
    items: list[T] = []
    bad: list[str] = []
    total = 0
    for i, entry in enumerate(entries):
        total += 1
        try:
            items.extend(parse(entry))
        except (KeyError, TypeError, ValueError, IndexError, FileNotFoundError) as e:
            reason = f"entry #{i} ({describe(entry)}): {type(e).__name__}: {e}"
            if not skip_bad:
                skip = f", or set {skip_setting} to skip such entries" if skip_setting else ""
                raise MalformedDataError(f"{dataset}: bad entry in {file}: {reason}. Fix or remove the entry{skip}"
                                         ) from e
            bad.append(reason)
    if bad:
        log.warning("%s: skipped %d of %d entries in %s (skip_bad_samples); first: %s", dataset, len(bad), total,
                    file, bad[0])
    return items


def existing_image(path: Path) -> Path:
    """``path`` if it is a file; raises FileNotFoundError (a bad entry for :func:`parse_entries`) otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} is missing")
    return path


def nonempty(text: Any, key: str) -> str:
    """A stripped non-empty string, else ValueError naming ``key``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{key!r} is empty or not a string")
    return text.strip()
