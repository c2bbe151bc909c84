import pytest
from torch.utils.data import DataLoader

from lightning_ssd.data.base import SkippingDataLoader
from lightning_ssd.data.synthetic import SyntheticDataModule
from tests.data.helpers import tiny_processor

SIZES = {"num_train": 2, "num_val": 2, "num_test": 2, "image_size": 32}


def test_injected_processor():
    dm = SyntheticDataModule(processor=tiny_processor("blip2-opt"), family="blip2-t5", batch_size=2, **SIZES)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert dm.family == "blip2-t5" and batch["labels"].shape[1] != batch["input_ids"].shape[1]
    assert SyntheticDataModule(processor=tiny_processor("llava"), **SIZES).family == "llava"
    assert "processor" not in dm.hparams


def test_processor_or_backbone_required():
    with pytest.raises(ValueError, match="set backbone"):
        SyntheticDataModule(**SIZES)
    with pytest.raises(ValueError, match="family='blip2-opt' or 'blip2-t5'"):
        SyntheticDataModule(processor=tiny_processor("blip2-opt"), **SIZES)


def test_loader_before_setup_and_unknown_stage():
    dm = SyntheticDataModule(backbone="tiny-llava", **SIZES)
    with pytest.raises(RuntimeError, match="the test split is not set up"):
        dm.test_dataloader()
    with pytest.raises(ValueError, match="unknown stage 'tune'"):
        dm.setup("tune")


def test_skipping_loader_drops_empty_batches():
    loader = SkippingDataLoader([1, None, 2], batch_size=1, collate_fn=lambda b: b[0])
    assert list(loader) == [1, 2] and isinstance(loader, DataLoader)
