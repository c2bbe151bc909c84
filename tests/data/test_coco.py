import json
import logging

import pytest

from lightning_ssd.data.coco import CocoCaptionDataModule
from lightning_ssd.data.io import DatasetFileError, MalformedDataError
from tests.data.fixtures import corrupt, truncate, write_karpathy


def _module(root, **kwargs) -> CocoCaptionDataModule:
    return CocoCaptionDataModule(root=str(root), backbone="tiny-blip2-opt", batch_size=4, **kwargs)


def test_karpathy_splits_and_batches(tmp_path):
    write_karpathy(tmp_path)
    dm = _module(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    # train + restval images, one sample per caption; val/test one sample per image.
    assert len(dm.datasets["train"]) == 2 + 3 + 2
    assert [r.sample_id for r in dm.datasets["val"].records] == [4, 5]
    assert len(dm.datasets["test"]) == 1
    batch = next(iter(dm.val_dataloader()))
    assert batch["references"] == [[f"A photo number 3 with {k} cats." for k in range(3)],
                                   [f"A photo number 4 with {k} cats." for k in range(2)]]
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["task"] == "caption"
    train = next(iter(dm.train_dataloader()))
    assert train["input_ids"].shape == train["labels"].shape and len(train["sample_ids"]) == 4


def test_missing_root_names_the_file_and_where_to_get_it(tmp_path):
    with pytest.raises(DatasetFileError) as err:
        _module(tmp_path / "nowhere").prepare_data()
    message = str(err.value)
    assert "dataset_coco.json" in message and "COCO Karpathy" in message and "karpathy/deepimagesent" in message


def test_truncated_json(tmp_path):
    truncate(write_karpathy(tmp_path))
    with pytest.raises(MalformedDataError, match="dataset_coco.json is not valid JSON"):
        _module(tmp_path).setup("fit")


def test_missing_split(tmp_path):
    path = write_karpathy(tmp_path)
    data = json.loads(path.read_text())
    data["images"] = [e for e in data["images"] if e["split"] != "test"]
    path.write_text(json.dumps(data))
    dm = _module(tmp_path)
    dm.setup("fit")
    with pytest.raises(MalformedDataError, match=r"no usable images with split in \['test'\]"):
        dm.setup("test")


def test_empty_caption_is_an_error_or_skipped_and_counted(tmp_path, caplog):
    path = write_karpathy(tmp_path)
    data = json.loads(path.read_text())
    data["images"][3]["sentences"][1]["raw"] = "  "
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedDataError, match=r"cocoid 4.*'sentences\[\]\.raw' is empty.*skip_bad_samples"):
        _module(tmp_path).setup("validate")
    with caplog.at_level(logging.WARNING):
        dm = _module(tmp_path, skip_bad_samples=True)
        dm.setup("validate")
    assert [r.sample_id for r in dm.datasets["val"].records] == [5]
    assert "skipped 1 of 6 entries" in caplog.text


def test_missing_image_file_is_a_bad_entry(tmp_path):
    write_karpathy(tmp_path)
    (tmp_path / "val2014" / "COCO_val2014_000000000005.jpg").unlink()
    with pytest.raises(MalformedDataError, match="COCO_val2014_000000000005.jpg is missing"):
        _module(tmp_path).setup("validate")


def test_unreadable_image_is_an_error_or_skipped(tmp_path, caplog):
    write_karpathy(tmp_path)
    bad = tmp_path / "val2014" / "COCO_val2014_000000000004.jpg"
    corrupt(bad)
    dm = _module(tmp_path)
    dm.setup("validate")
    with pytest.raises(MalformedDataError, match="cannot read image .*COCO_val2014_000000000004.jpg"):
        next(iter(dm.val_dataloader()))

    dm = _module(tmp_path, skip_bad_samples=True, eval_batch_size=1)
    dm.setup("validate")
    with caplog.at_level(logging.WARNING):
        batches = list(dm.val_dataloader())
    # The batch holding only the bad sample is dropped; the other one comes through.
    assert [b["sample_ids"] for b in batches] == [[5]]
    assert "skipped unreadable image" in caplog.text and "1 skipped so far" in caplog.text
