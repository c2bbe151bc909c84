import json

import pytest

from lightning_ssd.data.io import MalformedDataError
from lightning_ssd.data.vqav2 import VQAv2DataModule
from tests.data.fixtures import write_vqav2


def test_questions_joined_with_answers(tmp_path):
    write_vqav2(tmp_path)
    dm = VQAv2DataModule(root=str(tmp_path), train_split=None, backbone="tiny-blip2-t5", batch_size=4)
    dm.prepare_data()
    dm.setup("test")
    records = dm.datasets["test"].records
    assert [r.sample_id for r in records] == [42000, 42001, 43000, 43001]
    assert records[0].references == ("cat",) * 7 + ("dog",) * 3 and records[0].target == "cat"
    batch = next(iter(dm.test_dataloader()))
    assert batch["task"] == "vqa" and len(batch["references"][0]) == 10
    text = dm.processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert text == "question: what is thing 0? answer:"


def test_train_files_are_checked_unless_training_is_off(tmp_path):
    write_vqav2(tmp_path)
    with pytest.raises(FileNotFoundError, match="v2_OpenEnded_mscoco_train2014_questions.json.*visualqa.org"):
        VQAv2DataModule(root=str(tmp_path), backbone="tiny-blip2-opt").prepare_data()
    dm = VQAv2DataModule(root=str(tmp_path), train_split=None, backbone="tiny-blip2-opt")
    dm.prepare_data()
    with pytest.raises(ValueError, match="no training split"):
        dm.setup("fit")


def test_question_without_annotation(tmp_path):
    write_vqav2(tmp_path)
    path = tmp_path / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    data["annotations"] = data["annotations"][1:]
    path.write_text(json.dumps(data))
    dm = VQAv2DataModule(root=str(tmp_path), train_split=None, backbone="tiny-blip2-opt")
    with pytest.raises(MalformedDataError, match="question_id 42000.*has no entry in v2_mscoco_val2014_annotations"):
        dm.setup("validate")
    dm = VQAv2DataModule(root=str(tmp_path), train_split=None, backbone="tiny-blip2-opt", skip_bad_samples=True)
    dm.setup("validate")
    assert len(dm.datasets["val"]) == 3
