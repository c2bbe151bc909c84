from pathlib import Path

import pytest
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

from lightning_ssd.data.base import VLDataModule

CONFIGS = sorted((Path(__file__).parents[2] / "experiments" / "_data").glob("*.yaml"))


def test_every_benchmark_has_a_config():
    assert {p.stem for p in CONFIGS} == {"coco", "nocaps", "visdial", "vqav2", "llava", "mmvet", "synthetic"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_instantiates(path):
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    config = parser.parse_path(path)
    data = parser.instantiate_classes(config).data
    assert isinstance(data, VLDataModule) and data.backbone.startswith("tiny-")
