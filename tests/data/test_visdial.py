import json

import pytest

from lightning_ssd.data.io import MalformedDataError
from lightning_ssd.data.visdial import VisDialDataModule
from tests.data.fixtures import write_visdial


def test_rounds_with_history_and_candidates(tmp_path):
    write_visdial(tmp_path)
    dm = VisDialDataModule(root=str(tmp_path), train=False, backbone="tiny-llava", batch_size=3)
    dm.prepare_data()
    dm.setup("test")  # test reads val by default (the test split's answers are private)
    records = dm.datasets["test"].records
    assert [r.sample_id for r in records] == ["7-0", "7-1", "7-2", "8-0", "8-1", "8-2"]
    third = records[2]
    assert third.query == "is there thing 2?" and third.context == "a caption of image 7"
    assert third.history == (("is there thing 0?", "answer 7"), ("is there thing 1?", "answer 8"))
    assert len(third.candidates) == 100 and third.candidates[third.gt_index] == third.target == "answer 9"
    batch = next(iter(dm.test_dataloader()))
    assert batch["gt_index"].tolist() == [7, 7, 7] and len(batch["candidates"][0]) == 100
    prompt = dm.processor.tokenizer.decode(batch["prompt_input_ids"][2], skip_special_tokens=True)
    assert "a caption of image 7\nis there thing 0? assistant: answer 7user: is there thing 1?" in prompt


def test_wrong_number_of_options(tmp_path):
    path = write_visdial(tmp_path)
    data = json.loads(path.read_text())
    data["data"]["dialogs"][1]["dialog"][0]["answer_options"] = [0, 1]
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedDataError, match="image_id 8.*2 answer_options, expected 100"):
        VisDialDataModule(root=str(tmp_path), train=False, backbone="tiny-llava").setup("validate")


def test_test_split_without_ground_truth(tmp_path):
    path = write_visdial(tmp_path, split="test", image_dir="VisualDialog_test2018")
    data = json.loads(path.read_text())
    for dialog in data["data"]["dialogs"]:
        del dialog["dialog"][-1]["answer"], dialog["dialog"][-1]["gt_index"]
        for turn in dialog["dialog"][:-1]:
            del turn["answer_options"], turn["gt_index"]
    path.write_text(json.dumps(data))
    dm = VisDialDataModule(root=str(tmp_path), train=False, backbone="tiny-llava", test_split="test")
    dm.setup("test")
    records = dm.datasets["test"].records
    assert [r.sample_id for r in records] == ["7-2", "8-2"]
    assert records[0].gt_index is None and len(records[0].history) == 2
