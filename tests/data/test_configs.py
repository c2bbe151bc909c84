from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

CONFIGS = sorted((Path(__file__).parents[2] / "experiments" / "_data").glob("*.yaml"))

# the files the first split of each benchmark reads, as the configs' comments list them
FIRST_SPLIT_FILES = {
    "coco": ("train", ["data/coco/dataset_coco.json", "data/coco/train2014", "data/coco/val2014"]),
    "llava": ("train", ["data/llava_instruct/llava_instruct_150k.json", "data/llava_instruct/train2017"]),
    "mmvet": ("val", ["data/mm-vet/mm-vet.json", "data/mm-vet/images"]),
    "nocaps": ("val", ["data/nocaps/nocaps_val_4500_captions.json", "data/nocaps/images"]),
    "synthetic": ("train", []),  # generated from the seed
    "visdial": ("train", ["data/visdial/visdial_1.0_train.json", "data/visdial/train2014", "data/visdial/val2014"]),
    "vqav2": ("train", ["data/vqav2/v2_OpenEnded_mscoco_train2014_questions.json",
                        "data/vqav2/v2_mscoco_train2014_annotations.json", "data/vqav2/train2014"]),
}


def _instantiate(path: Path) -> LightningDataModule:
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    return parser.instantiate_classes(parser.parse_path(path)).data


def test_every_benchmark_has_a_config():
    assert {p.stem for p in CONFIGS} == set(FIRST_SPLIT_FILES)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_instantiates(path):
    data = _instantiate(path)
    spec = yaml.safe_load(path.read_text())["data"]
    args = spec["init_args"]
    module, name = spec["class_path"].rsplit(".", 1)
    assert type(data).__name__ == name and type(data).__module__.startswith(module)
    assert data.backbone == args["backbone"] and data.backbone.startswith("tiny-")
    assert data.batch_size == args["batch_size"]
    assert data.eval_batch_size == (args.get("eval_batch_size") or args["batch_size"])
    assert (data.num_workers, data.max_target_length) == (args["num_workers"], args["max_target_length"])
    split, files = FIRST_SPLIT_FILES[path.stem]
    assert data.splits[0] == split
    assert [str(p) for p in data.required_files(split)] == files


def test_synthetic_config_sizes_the_generated_benchmark():
    data = _instantiate(next(p for p in CONFIGS if p.stem == "synthetic"))
    c = data.config
    assert (data.task, data.root) == ("caption", None)
    assert (c.seed, c.num_train, c.num_val, c.num_test, c.image_size) == (0, 10000, 500, 500, 64)
