"""The shared LightningDataModule: processor and family from the backbone, stages to splits, dataloaders."""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader
from transformers import LlavaProcessor
from transformers.processing_utils import ProcessorMixin

from lightning_ssd.data.collate import VLCollator
from lightning_ssd.data.io import require
from lightning_ssd.data.prompts import check_family
from lightning_ssd.data.readers.base import VLDataset

log = logging.getLogger(__name__)

STAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",),
}


class SkippingDataLoader(DataLoader):
    """A DataLoader that drops batches the collate function returned as None (all samples skipped)."""

    def __iter__(self) -> Iterator[Any]:
        return (batch for batch in super().__iter__() if batch is not None)


class VLDataModule(LightningDataModule):
    """Base of every benchmark's DataModule.

    Subclasses name the benchmark, list the files each split needs and parse a split into a
    :class:`~lightning_ssd.data.readers.base.VLDataset`; this class turns stages into splits and
    builds the dataloaders with a :class:`~lightning_ssd.data.collate.VLCollator` for the backbone.

    Args:
        backbone: a preset name ("tiny-blip2-opt", "tiny-blip2-t5", "tiny-llava", ...) or a local checkpoint
            folder; the processor and the prompt family come from it through ``lightning_ssd.backbones``.
        batch_size: samples per training batch.
        eval_batch_size: samples per validation/test batch; ``batch_size`` if None.
        num_workers: DataLoader worker processes.
        skip_bad_samples: skip malformed entries, missing and unreadable images (counted in the log)
            instead of raising an error that names the file and entry.
        max_target_length: longest target in tokens, eos included; longer targets are cut.
        processor: an already-built processor, used instead of loading one from ``backbone`` (tests).
        family: "blip2-opt", "blip2-t5" or "llava"; needed only with a ``processor`` that is not a
            ``LlavaProcessor`` (a ``Blip2Processor`` does not say whether its LLM is OPT or T5).
    """

    dataset_name: ClassVar[str]
    how_to_get: ClassVar[str]
    eval_only: ClassVar[bool] = False

    def __init__(
        self,
        backbone: str | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        skip_bad_samples: bool = False,
        max_target_length: int = 64,
        processor: ProcessorMixin | None = None,
        family: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["processor"])
        if backbone is None and processor is None:
            raise ValueError(f"{type(self).__name__}: set backbone (a preset such as 'tiny-blip2-opt' or a local "
                             "checkpoint folder) or pass a processor")
        if processor is not None and family is None:
            if not isinstance(processor, LlavaProcessor):
                raise ValueError(f"{type(self).__name__}: with a {type(processor).__name__}, say which family it "
                                 "serves: family='blip2-opt' or 'blip2-t5'")
            family = "llava"
        self.backbone = backbone
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.skip_bad_samples = skip_bad_samples
        self.max_target_length = max_target_length
        self._processor = processor
        self._family = check_family(family) if family is not None else None
        self.datasets: dict[str, VLDataset] = {}

    @property
    def processor(self) -> ProcessorMixin:
        if self._processor is None:
            from lightning_ssd.backbones import load_processor

            self._processor = load_processor(self.backbone)
        return self._processor

    @property
    def family(self) -> str:
        if self._family is None:
            from lightning_ssd.backbones import family_of

            self._family = family_of(self.backbone)
        return self._family

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this module reads; ``prepare_data`` checks the files of all of them."""
        return ("val", "test") if self.eval_only else ("train", "val", "test")

    def required_files(self, split: str) -> list[Path]:
        """Files and folders that ``split`` reads."""
        raise NotImplementedError

    def build_dataset(self, split: str) -> VLDataset:
        """Parse ``split`` ("train", "val" or "test")."""
        raise NotImplementedError

    def check_files(self, splits: tuple[str, ...]) -> None:
        for split in splits:
            for path in self.required_files(split):
                require(path, self.dataset_name, self.how_to_get)

    def prepare_data(self) -> None:
        self.check_files(self.splits)

    def setup(self, stage: str | None = None) -> None:
        wanted = STAGE_SPLITS.get(stage or "fit")
        if wanted is None:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGE_SPLITS)}")
        if "train" in wanted and "train" not in self.splits:
            raise ValueError(f"{type(self).__name__} has no training split ({self.dataset_name} is used for "
                             "evaluation only here): run `validate` or `test` with it, and train on another DataModule")
        self.check_files(wanted)
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)
                log.info("%s %s: %d samples", self.dataset_name, split, len(self.datasets[split]))

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"{type(self).__name__}: the {split} split is not set up; call setup() with a stage "
                               "that uses it first")
        dataset = self.datasets[split]
        collate = VLCollator(self.processor, self.family, dataset.task, self.max_target_length)
        return SkippingDataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                                  collate_fn=collate, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
