"""LLaVA-Instruct-150K for training LLaVA-style conversation, evaluated on LLaVA-Bench or a held-out part."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.io import require
from lightning_ssd.data.llava_bench import HOW_TO_GET as BENCH_HOW_TO_GET
from lightning_ssd.data.llava_bench import llava_bench_dataset, llava_bench_files
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.llava_instruct import DATASET, load_llava_instruct


class LlavaInstructDataModule(VLDataModule):
    """LLaVA-Instruct-150K conversations, one sample per assistant turn (earlier turns in the prompt).

    Validation and test read LLaVA-Bench (In-the-Wild) when ``bench_root`` is set; otherwise the last
    ``num_val`` conversations of the instruct file, which training then leaves out.

    Args:
        root: folder with the conversation file and the image folder.
        conversation_file: relative to ``root``.
        image_dir: folder (relative to ``root``) the ``image`` names are relative to (COCO ``train2017``).
        bench_root: LLaVA-Bench (In-the-Wild) folder, for validation and test.
        num_val: conversations held out for validation/test when ``bench_root`` is None (0: validate on
            all conversations, the training ones included).
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = ("Download llava_instruct_150k.json from the Hugging Face dataset liuhaotian/LLaVA-Instruct-150K "
                  "and the COCO train2017 images (https://cocodataset.org/#download), and put them under root as "
                  "llava_instruct_150k.json and train2017/.")

    def __init__(self, root: str, conversation_file: str = "llava_instruct_150k.json", image_dir: str = "train2017",
                 bench_root: str | None = None, num_val: int = 200, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.conversation_file = self.root / conversation_file
        self.image_dir = self.root / image_dir
        self.bench_root = Path(bench_root) if bench_root is not None else None
        self.num_val = num_val

    def required_files(self, split: str) -> list[Path]:
        if split != "train" and self.bench_root is not None:
            return []  # checked in check_files with LLaVA-Bench's own message
        return [self.conversation_file, self.image_dir]

    def check_files(self, splits: tuple[str, ...]) -> None:
        super().check_files(splits)
        if self.bench_root is not None and set(splits) & {"val", "test"}:
            for path in llava_bench_files(self.bench_root):
                require(path, "LLaVA-Bench (In-the-Wild)", BENCH_HOW_TO_GET)

    def build_dataset(self, split: str) -> VLDataset:
        if split != "train" and self.bench_root is not None:
            return llava_bench_dataset(self.bench_root, self.skip_bad_samples)
        if self.bench_root is not None or self.num_val == 0:
            entries = slice(None)
        else:
            entries = slice(None, -self.num_val) if split == "train" else slice(-self.num_val, None)
        records = load_llava_instruct(self.conversation_file, self.image_dir, entries=entries,
                                      skip_bad=self.skip_bad_samples)
        return VLDataset(records, "instruct", self.dataset_name, self.skip_bad_samples)
