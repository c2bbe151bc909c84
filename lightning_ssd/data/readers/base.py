"""The sample type every benchmark parser produces, and the map-style dataset that loads images for it."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from lightning_ssd.data.io import MalformedDataError, load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One sample, family-independent; the collate function turns it into a prompt for a backbone.

    Attributes:
        image: path of the image file, or an index into in-memory images (synthetic benchmark).
        sample_id: unique id in the split (image id, question id, "dialog-round", ...).
        query: the current question or instruction; None for plain captioning.
        target: the training target (one caption, the answer, the gt dialog answer); None when unknown.
        references: what generated text is scored against (captions, the 10 VQA answers, the gt answer).
        context: text shown before the conversation (VisDial's caption).
        history: earlier (question, answer) turns, oldest first.
        candidates: VisDial's 100 answer options.
        gt_index: index of the ground-truth answer in ``candidates``; None where unknown (VisDial test).
    """

    image: Path | int
    sample_id: int | str
    query: str | None = None
    target: str | None = None
    references: tuple[str, ...] = ()
    context: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    candidates: tuple[str, ...] | None = None
    gt_index: int | None = None


@dataclass(frozen=True)
class Sample:
    """A record with its decoded image, and its index in the dataset (-1 where it was made outside one)."""

    image: Image.Image
    record: Record
    index: int = -1


class VLDataset(Dataset):
    """Records of one split of one benchmark, with images read from disk or held in memory.

    Args:
        records: the parsed entries.
        task: "caption", "vqa", "visdial", "instruct" or "long"; selects the prompt and is passed on in batches.
        dataset: the benchmark's name, for error messages.
        skip_bad_samples: on an unreadable image, log it and return None (the collate function drops it)
            instead of raising.
        images: in-memory images indexed by ``Record.image`` when it is an int.
    """

    def __init__(self, records: Sequence[Record], task: str, dataset: str, skip_bad_samples: bool = False,
                 images: Sequence[Image.Image] | None = None) -> None:
        self.records = list(records)
        self.task = task
        self.dataset = dataset
        self.skip_bad_samples = skip_bad_samples
        self.images = images
        self.skipped = 0  # per process: each DataLoader worker counts its own

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample | None:
        record = self.records[index]
        if isinstance(record.image, int):
            if self.images is None:
                raise ValueError(f"{self.dataset}: record {record.sample_id} points to in-memory image "
                                 f"{record.image} but the dataset holds no images")
            return Sample(self.images[record.image], record, index)
        try:
            return Sample(load_image(record.image), record, index)
        except (OSError, ValueError) as e:
            if not self.skip_bad_samples:
                raise MalformedDataError(
                    f"{self.dataset}: cannot read image {record.image} (sample {record.sample_id}): {e}. "
                    "Replace the file, or set skip_bad_samples: true to skip such samples"
                ) from e
            self.skipped += 1
            log.warning("%s: skipped unreadable image %s (sample %s): %s; %d skipped so far in this process",
                        self.dataset, record.image, record.sample_id, e, self.skipped)
            return None
