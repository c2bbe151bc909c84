"""MM-Vet: open-ended questions that combine recognition, OCR, knowledge, spatial reasoning, maths, language."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.mmvet import DATASET, load_mmvet


class MMVetDataModule(VLDataModule):
    """MM-Vet v1 (218 questions); evaluation only (``validate`` and ``test`` read the same set).

    Args:
        root: folder with ``mm-vet.json`` and ``images/`` (the unzipped ``mm-vet.zip``).
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = ("Download mm-vet.zip (https://github.com/yuweihao/MM-Vet/releases) and unzip it so that root "
                  "holds mm-vet.json and images/.")
    eval_only = True

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)

    def required_files(self, split: str) -> list[Path]:
        return [self.root / "mm-vet.json", self.root / "images"]

    def build_dataset(self, split: str) -> VLDataset:
        records = load_mmvet(self.root / "mm-vet.json", self.root / "images", skip_bad=self.skip_bad_samples)
        return VLDataset(records, "instruct", self.dataset_name, self.skip_bad_samples)
