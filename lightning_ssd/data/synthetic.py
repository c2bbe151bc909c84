"""The embedded synthetic benchmark as a DataModule: no download, deterministic from a seed.

What it contains (see ``lightning_ssd/data/README.md`` for the full description):

- Images (default 64x64 RGB): one or two groups of 1-3 identical flat-coloured shapes (circle, square,
  triangle, cross, diamond; 7 colours; small or large; 4 objects at most), on a 3x3 grid, over a dark
  plain, gradient, striped, noisy or checkered background.
- Per image: 5 reference captions (8-20 words) from 6 templates; VQA questions with one-word answers
  (counts, colours, shapes, positions, sizes, yes/no, background); VisDial-style rounds with 100 candidate
  answers; a long description (40+ tokens).

Why: the paper's effect needs two kinds of tokens. Template words ("a photo of", "there are", "on a",
"background") follow from the text so far, so shallow layers predict them; slot words (count, size,
colour, shape, position, pattern) are only in the pixels, so they need the deep layers that attend to
the image. The vocabulary is closed (about 80 words, plus the prompts), so a tiny model trained from scratch learns the
language in minutes and what remains hard is reading the image.
"""

from pathlib import Path
from typing import Any, Literal

from lightning_ssd.data.base import VLDataModule
from lightning_ssd.data.prompts import DETAIL_INSTRUCTION
from lightning_ssd.data.readers.base import Record, VLDataset
from lightning_ssd.data.readers.coco import load_karpathy
from lightning_ssd.data.readers.llava_instruct import load_llava_instruct
from lightning_ssd.data.readers.visdial import load_visdial
from lightning_ssd.data.readers.vqav2 import load_vqav2
from lightning_ssd.data.synth.benchmark import SyntheticConfig, SyntheticItem, generate_split
from lightning_ssd.data.synth.writer import IMAGE_FOLDERS, MARKER, write_benchmark

DATASET = "synthetic shapes"
TASKS: tuple[str, ...] = ("caption", "vqa", "visdial", "long")
VQA_ANSWERS = 10  # copies of the answer, so VQA accuracy (min(#humans agreeing / 3, 1)) applies unchanged


def _question(text: str) -> str:
    return text if text.endswith("?") else f"{text}?"


def records_in_memory(items: list[SyntheticItem], task: str, train: bool) -> list[Record]:
    """The records the on-disk readers produce for the written benchmark, with in-memory image indices."""
    records: list[Record] = []
    for i, item in enumerate(items):
        caps = item.captions
        if task == "caption" and train:
            records += [Record(i, f"{item.image_id}-{j}", target=c, references=caps) for j, c in enumerate(caps)]
        elif task == "caption":
            records.append(Record(i, item.image_id, target=caps[0], references=caps))
        elif task == "vqa":
            records += [Record(i, item.image_id * 10 + k, query=qa.question, target=qa.answer,
                               references=(qa.answer,) * VQA_ANSWERS) for k, qa in enumerate(item.questions)]
        elif task == "visdial":
            history: list[tuple[str, str]] = []
            for r, rnd in enumerate(item.dialog):
                question = _question(rnd.question)
                records.append(Record(i, f"{item.image_id}-{r}", query=question, target=rnd.answer,
                                      references=(rnd.answer,), context=caps[0], history=tuple(history),
                                      candidates=rnd.candidates, gt_index=rnd.gt_index))
                history.append((question, rnd.answer))
        elif task == "long":
            records.append(Record(i, f"{item.image_id}-0", query=DETAIL_INSTRUCTION, target=item.description,
                                  references=(item.description,)))
        else:
            raise ValueError(f"unknown synthetic task {task!r}; expected one of {list(TASKS)}")
    return records


class SyntheticDataModule(VLDataModule):
    """The embedded synthetic benchmark, generated from ``seed``; held in memory, or written once under ``root``.

    With ``root``, ``prepare_data`` writes the whole benchmark there in the official formats (COCO-Karpathy,
    VQAv2, VisDial v1.0, LLaVA-Instruct), atomically, unless the same benchmark is already there, and
    ``setup`` reads it back through the same readers as the real benchmarks.

    Args:
        task: "caption", "vqa", "visdial" or "long" (detailed description, prompted like LLaVA's detail task).
        num_train: training images (captions: 5 samples per image; vqa: ``questions_per_image``;
            visdial: ``dialog_rounds``; long: 1).
        num_val: validation images.
        num_test: test images.
        seed: everything follows from it; item ``i`` of a split does not depend on the split sizes.
        image_size: side of the square images in pixels.
        root: folder to write the benchmark to and read it from; None keeps it in memory.
        captions_per_image: reference captions per image (at most 6 templates).
        questions_per_image: VQA questions per image.
        dialog_rounds: VisDial rounds per image.
        test_domain: None for the whole world; "in", "near" or "out" trains and validates on in-domain scenes only
            and tests on that domain (the zero-shot splits, ``lightning_ssd.data.synth.domains``).
        train_domain: with ``test_domain``, trains and validates on this domain instead of "in" (a shifted
            fine-tune).
        **kwargs: see :class:`~lightning_ssd.data.base.VLDataModule`.
    """

    dataset_name = DATASET
    how_to_get = "It is generated by SyntheticDataModule.prepare_data(); run it (or Trainer.fit) once with this root."

    def __init__(self, task: Literal["caption", "vqa", "visdial", "long"] = "caption", num_train: int = 2000,
                 num_val: int = 200, num_test: int = 200, seed: int = 0, image_size: int = 64,
                 root: str | None = None, captions_per_image: int = 5, questions_per_image: int = 3,
                 dialog_rounds: int = 5, test_domain: Literal["in", "near", "out"] | None = None,
                 train_domain: Literal["in", "near", "out"] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        self.task = task
        self.config = SyntheticConfig(seed=seed, num_train=num_train, num_val=num_val, num_test=num_test,
                                      image_size=image_size, captions_per_image=captions_per_image,
                                      questions_per_image=questions_per_image, dialog_rounds=dialog_rounds,
                                      test_domain=test_domain, train_domain=train_domain)
        self.root = Path(root) if root is not None else None

    def required_files(self, split: str) -> list[Path]:
        return [] if self.root is None else [self.root / MARKER]

    def prepare_data(self) -> None:
        if self.root is not None:
            write_benchmark(self.config, self.root)

    def build_dataset(self, split: str) -> VLDataset:
        if self.root is None:
            items = generate_split(self.config, split)
            records = records_in_memory(items, self.task, train=split == "train")
            return VLDataset(records, self.task, DATASET, self.skip_bad_samples, images=[it.image for it in items])
        return VLDataset(self._read(split), self.task, DATASET, self.skip_bad_samples)

    def _read(self, split: str) -> list[Record]:
        root, folder, skip = self.root, IMAGE_FOLDERS[split], self.skip_bad_samples
        if self.task == "caption":
            return load_karpathy(root / "dataset_coco.json", root, split, train_pairs=split == "train",
                                 skip_bad=skip, dataset=DATASET)
        if self.task == "vqa":
            return load_vqav2(root / f"v2_OpenEnded_mscoco_{folder}_questions.json",
                              root / f"v2_mscoco_{folder}_annotations.json", root / folder, skip_bad=skip,
                              dataset=DATASET)
        if self.task == "visdial":
            return load_visdial(root / f"visdial_1.0_{split}.json", [root / folder], skip_bad=skip, dataset=DATASET)
        return load_llava_instruct(root / f"llava_detail_{split}.json", root, skip_bad=skip, dataset=DATASET)
