import json

import pytest

from lightning_ssd.data.io import DatasetFileError, MalformedDataError
from lightning_ssd.data.nocaps import NoCapsDataModule
from tests.data.fixtures import write_nocaps


def test_validation_images_with_ten_captions(tmp_path):
    write_nocaps(tmp_path)
    dm = NoCapsDataModule(root=str(tmp_path), backbone="tiny-llava", batch_size=2)
    dm.prepare_data()
    dm.setup("validate")
    records = dm.datasets["val"].records
    assert [r.sample_id for r in records] == [0, 1, 2]
    assert all(len(r.references) == 10 for r in records)
    batch = next(iter(dm.val_dataloader()))
    assert batch["references"][1][0] == "nocaps image 1 caption 0"


def test_zero_shot_only(tmp_path):
    write_nocaps(tmp_path)
    with pytest.raises(ValueError, match="no training split"):
        NoCapsDataModule(root=str(tmp_path), backbone="tiny-llava").setup("fit")


def test_missing_file_message(tmp_path):
    with pytest.raises(DatasetFileError, match=r"NoCaps: expected .*nocaps_val_4500_captions.json.*nocaps.org"):
        NoCapsDataModule(root=str(tmp_path), backbone="tiny-llava").prepare_data()


def test_test_split_without_captions(tmp_path):
    path = write_nocaps(tmp_path)
    data = json.loads(path.read_text())
    del data["annotations"]
    (tmp_path / "nocaps_test_image_info.json").write_text(json.dumps(data))
    dm = NoCapsDataModule(root=str(tmp_path), test_file="nocaps_test_image_info.json", backbone="tiny-llava")
    dm.setup("test")
    assert all(r.references == () and r.target is None for r in dm.datasets["test"].records)


def test_image_without_caption_is_bad(tmp_path):
    path = write_nocaps(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 2]
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedDataError, match="id 2.*has no caption"):
        NoCapsDataModule(root=str(tmp_path), backbone="tiny-llava").setup("validate")
