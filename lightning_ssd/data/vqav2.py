"""VQAv2: open-ended visual question answering on COCO images."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.vqav2 import DATASET, load_vqav2


class VQAv2DataModule(VLDataModule):
    """VQAv2 with the official file names; a split name picks the files and the COCO image folder.

    ``test`` reads the val2014 split by default: test-dev answers are private (EvalAI server). A split
    without annotation file (``test-dev2015``) yields records without references.

    Args:
        root: folder with the question and annotation files and the COCO image folders.
        train_split: "train2014": reads ``v2_OpenEnded_mscoco_train2014_questions.json``,
            ``v2_mscoco_train2014_annotations.json`` and ``train2014/``; None for evaluation only (its files
            are then not required).
        val_split: the split used for validation.
        test_split: the split used for test.
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = ("Download the VQAv2 questions and annotations (https://visualqa.org/download.html) and the COCO "
                  "2014 images (https://cocodataset.org/#download), unzip them under root: "
                  "v2_OpenEnded_mscoco_<split>_questions.json, v2_mscoco_<split>_annotations.json, <split>/.")

    def __init__(self, root: str, train_split: str | None = "train2014", val_split: str = "val2014",
                 test_split: str = "val2014", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(split for split, name in self.split_names.items() if name is not None)

    def _files(self, split: str) -> tuple[Path, Path | None, Path]:
        name = self.split_names[split]
        annotations = self.root / f"v2_mscoco_{name}_annotations.json"
        images = self.root / ("test2015" if name.startswith("test") else name)
        has_answers = not name.startswith("test")
        return self.root / f"v2_OpenEnded_mscoco_{name}_questions.json", annotations if has_answers else None, images

    def required_files(self, split: str) -> list[Path]:
        return [p for p in self._files(split) if p is not None]

    def build_dataset(self, split: str) -> VLDataset:
        questions, annotations, images = self._files(split)
        records = load_vqav2(questions, annotations, images, skip_bad=self.skip_bad_samples)
        return VLDataset(records, "vqa", self.dataset_name, self.skip_bad_samples)
