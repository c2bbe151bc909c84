"""NoCaps: novel-object captioning on Open Images, zero-shot evaluation of a COCO-trained captioner."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.nocaps import DATASET, load_nocaps


class NoCapsDataModule(VLDataModule):
    """NoCaps validation (4,500 images, 10 captions each), for ``validate`` and ``test``; no training split.

    The official test split has no public captions (``nocaps_test_image_info.json``, scored by the
    EvalAI server); ``test_file`` can point to it, in which case references are empty.

    Args:
        root: folder with the annotation files and the image folder.
        val_file: captions file of the validation split, relative to ``root``.
        test_file: file read for ``test``; the validation captions by default.
        image_dir: folder (relative to ``root``) holding the images named by ``file_name``.
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = ("Download nocaps_val_4500_captions.json from https://nocaps.org/download and the validation "
                  "images it lists (Open Images V4 validation; the file's coco_url entries), and put the json under "
                  "root and the images in root/<image_dir>/.")
    eval_only = True

    def __init__(self, root: str, val_file: str = "nocaps_val_4500_captions.json",
                 test_file: str = "nocaps_val_4500_captions.json", image_dir: str = "images", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.files = {"val": self.root / val_file, "test": self.root / test_file}
        self.image_dir = self.root / image_dir

    def required_files(self, split: str) -> list[Path]:
        return [self.files[split], self.image_dir]

    def build_dataset(self, split: str) -> VLDataset:
        records = load_nocaps(self.files[split], self.image_dir, skip_bad=self.skip_bad_samples)
        return VLDataset(records, "caption", self.dataset_name, self.skip_bad_samples)
