"""COCO captions, Karpathy split: the captioning benchmark BLIP-2 is fine-tuned and evaluated on."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.coco import DATASET, load_karpathy


class CocoCaptionDataModule(VLDataModule):
    """COCO captions with Karpathy's train (+restval) / val / test split (113k / 5k / 5k images).

    Training sees every (image, caption) pair once per epoch (about 5 per image, as in LAVIS); validation
    and test see each image once, with all its captions as references.

    Args:
        root: folder with ``dataset_coco.json``, ``train2014/`` and ``val2014/``.
        annotation_file: the Karpathy split file, relative to ``root``.
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule` (backbone, batch_size, ...).
    """

    dataset_name = DATASET
    how_to_get = ("Download Karpathy's split file dataset_coco.json (caption_datasets.zip from "
                  "https://cs.stanford.edu/people/karpathy/deepimagesent/) and the COCO 2014 train and val images "
                  "(https://cocodataset.org/#download), and put them under root as dataset_coco.json, train2014/ "
                  "and val2014/.")

    def __init__(self, root: str, annotation_file: str = "dataset_coco.json", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.annotation_file = self.root / annotation_file

    def required_files(self, split: str) -> list[Path]:
        return [self.annotation_file, self.root / "train2014", self.root / "val2014"]

    def build_dataset(self, split: str) -> VLDataset:
        records = load_karpathy(self.annotation_file, self.root, split, train_pairs=split == "train",
                                skip_bad=self.skip_bad_samples)
        return VLDataset(records, "caption", self.dataset_name, self.skip_bad_samples)
