"""VisDial v1.0: answering a question about an image given its caption and the dialog so far."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.visdial import DATASET, load_visdial

# VisDial v1.0 train dialogs are on COCO train2014 + val2014 images; val and test have their own folders.
DEFAULT_IMAGE_DIRS: dict[str, list[str]] = {
    "train": ["train2014", "val2014"], "val": ["VisualDialog_val2018"], "test": ["VisualDialog_test2018"],
}


class VisDialDataModule(VLDataModule):
    """VisDial v1.0, one sample per dialog round, with the 100 candidate answers and the ground truth's index.

    ``test`` reads the val split by default: the test split's answers are private (one round per dialog,
    no ``gt_index``); set ``test_split: test`` to read it anyway (``gt_index`` is then -1).

    Args:
        root: folder with ``visdial_1.0_<split>.json`` and the image folders.
        train: read ``visdial_1.0_train.json`` for ``fit``; False for evaluation only (its files are then
            not required).
        test_split: "val" or "test": the split read for ``test``.
        image_dirs: image folders per split, relative to ``root``; the official layout by default.
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = ("Download visdial_1.0_train.zip / visdial_1.0_val.zip and the VisualDialog_val2018 / _test2018 "
                  "images from https://visualdialog.org/data (train images are COCO train2014 + val2014), and unzip "
                  "them under root: visdial_1.0_<split>.json, train2014/, val2014/, VisualDialog_val2018/.")

    def __init__(self, root: str, train: bool = True, test_split: str = "val",
                 image_dirs: dict[str, list[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if test_split not in ("val", "test"):
            raise ValueError(f"test_split must be 'val' or 'test', got {test_split!r}")
        self.root = Path(root)
        self.split_names = {"train": "train", "val": "val", "test": test_split}
        self.train = train
        self.image_dirs = {**DEFAULT_IMAGE_DIRS, **(image_dirs or {})}

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test") if self.train else ("val", "test")

    def _files(self, split: str) -> tuple[Path, list[Path]]:
        name = self.split_names[split]
        return self.root / f"visdial_1.0_{name}.json", [self.root / d for d in self.image_dirs[name]]

    def required_files(self, split: str) -> list[Path]:
        dialog_file, image_dirs = self._files(split)
        return [dialog_file, *image_dirs]

    def build_dataset(self, split: str) -> VLDataset:
        dialog_file, image_dirs = self._files(split)
        records = load_visdial(dialog_file, image_dirs, skip_bad=self.skip_bad_samples)
        return VLDataset(records, "visdial", self.dataset_name, self.skip_bad_samples)
