"""A user's own images as a DataModule: `predict` (or `test`) over a folder, a glob or a JSONL of prompts."""

import glob
from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.images import DATASET, load_image_records, task_of, with_instruction


class ImagesDataModule(VLDataModule):
    """Images of one's own, to decode (every stage reads the same images; there are no references to score).

    Args:
        images: a folder (searched recursively; .jpg .jpeg .png .bmp .gif .webp .tif .tiff in any case, other
            files ignored), a glob pattern such as ``photos/**/*.png``, or a ``.jsonl`` file of
            ``{"image": path, "prompt": text, "id": any}`` lines (paths relative to the file; prompt and id
            optional).
        prompt: the instruction for every image (a JSONL row's own prompt wins); None captions the images.
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`; ``skip_bad_samples`` skips missing and
            unreadable images (counted in the log) instead of stopping with an error that names the file.
    """

    dataset_name = DATASET
    how_to_get = "Point images at a folder, a glob pattern or a .jsonl file of {\"image\": ..., \"prompt\": ...}."
    eval_only = True

    def __init__(self, images: str, prompt: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.prompt = prompt

    @property
    def splits(self) -> tuple[str, ...]:
        return ("test",)

    def required_files(self, split: str) -> list[Path]:
        return [] if glob.has_magic(self.images) else [Path(self.images)]  # a glob's matches are found in setup

    def build_dataset(self, split: str) -> VLDataset:
        records = with_instruction(load_image_records(self.images, self.prompt, skip_bad=self.skip_bad_samples))
        return VLDataset(records, task_of(records), self.dataset_name, self.skip_bad_samples)
