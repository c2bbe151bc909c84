import json

import pytest

from lightning_ssd.data.io import DatasetFileError, MalformedDataError
from lightning_ssd.data.mmvet import MMVetDataModule
from tests.data.fixtures import write_mmvet


def test_questions(tmp_path):
    write_mmvet(tmp_path)
    dm = MMVetDataModule(root=str(tmp_path), backbone="tiny-blip2-opt", batch_size=3)
    dm.prepare_data()
    dm.setup("validate")
    records = dm.datasets["val"].records
    assert [r.sample_id for r in records] == ["v1_0", "v1_1", "v1_2"]
    assert records[1].references == ("1 <OR> 1.0",)
    assert len(next(iter(dm.val_dataloader()))["sample_ids"]) == 3


def test_missing_images_folder(tmp_path):
    write_mmvet(tmp_path)
    for image in (tmp_path / "images").iterdir():
        image.unlink()
    (tmp_path / "images").rmdir()
    with pytest.raises(DatasetFileError, match="MM-Vet: expected .*images but it does not exist.*mm-vet.zip"):
        MMVetDataModule(root=str(tmp_path), backbone="tiny-blip2-opt").prepare_data()


def test_entry_without_answer(tmp_path):
    path = write_mmvet(tmp_path)
    data = json.loads(path.read_text())
    del data["v1_1"]["answer"]
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedDataError, match="entry #1 \\('v1_1'\\): KeyError: 'answer'"):
        MMVetDataModule(root=str(tmp_path), backbone="tiny-blip2-opt").setup("test")
