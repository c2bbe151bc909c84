"""LLaVA-Bench (In-the-Wild): open-ended questions on 24 varied images, GPT-4 answers as references."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.readers.base import VLDataset
from lightning_ssd.data.readers.llava_bench import DATASET, load_llava_bench

HOW_TO_GET = ("Download questions.jsonl, answers_gpt4.jsonl and images/ from the Hugging Face dataset "
              "liuhaotian/llava-bench-in-the-wild and put them under the benchmark's root.")


def llava_bench_dataset(root: Path, skip_bad_samples: bool) -> VLDataset:
    records = load_llava_bench(root / "questions.jsonl", root / "answers_gpt4.jsonl", root / "images",
                               skip_bad=skip_bad_samples)
    return VLDataset(records, "instruct", DATASET, skip_bad_samples)


def llava_bench_files(root: Path) -> list[Path]:
    return [root / "questions.jsonl", root / "answers_gpt4.jsonl", root / "images"]


class LlavaBenchDataModule(VLDataModule):
    """LLaVA-Bench (In-the-Wild), 60 questions; evaluation only (``validate`` and ``test`` read the same set).

    Args:
        root: folder with ``questions.jsonl``, ``answers_gpt4.jsonl`` and ``images/``.
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = HOW_TO_GET
    eval_only = True

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)

    def required_files(self, split: str) -> list[Path]:
        return llava_bench_files(self.root)

    def build_dataset(self, split: str) -> VLDataset:
        return llava_bench_dataset(self.root, self.skip_bad_samples)
