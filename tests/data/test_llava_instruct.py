import json

import pytest

from lightning_ssd.data.io import MalformedDataError
from lightning_ssd.data.llava_instruct import LlavaInstructDataModule
from tests.data.fixtures import write_llava_bench, write_llava_instruct


def test_one_sample_per_assistant_turn_with_held_out_conversations(tmp_path):
    write_llava_instruct(tmp_path, n=4)
    dm = LlavaInstructDataModule(root=str(tmp_path), backbone="tiny-llava", num_val=1, batch_size=2)
    dm.prepare_data()
    dm.setup("fit")
    train, val = dm.datasets["train"].records, dm.datasets["val"].records
    assert len(train) == 6 and [r.sample_id for r in val] == ["000000000003-0", "000000000003-1"]
    assert val[0].query == "What is in picture 3?" and val[0].history == ()
    assert val[1].history == (("What is in picture 3?", "Picture 3 shows a cat."),)
    batch = next(iter(dm.val_dataloader()))
    tok = dm.processor.tokenizer
    prompt = tok.decode(batch["prompt_input_ids"][1], skip_special_tokens=True)
    assert prompt.endswith("what is in picture 3? assistant: picture 3 shows a cat.user: what colour is it? assistant:")
    labels = batch["labels"][1]
    assert tok.decode(labels[labels != -100]) == " it is black.</s>"


def test_bench_for_evaluation(tmp_path):
    write_llava_instruct(tmp_path / "instruct")
    write_llava_bench(tmp_path / "bench")
    dm = LlavaInstructDataModule(root=str(tmp_path / "instruct"), bench_root=str(tmp_path / "bench"),
                                 backbone="tiny-llava")
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 8 and [r.sample_id for r in dm.datasets["val"].records] == [0, 1, 2]
    (tmp_path / "bench" / "answers_gpt4.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="LLaVA-Bench.*answers_gpt4.jsonl"):
        LlavaInstructDataModule(root=str(tmp_path / "instruct"), bench_root=str(tmp_path / "bench"),
                                backbone="tiny-llava").prepare_data()


def test_turns_out_of_order(tmp_path):
    path = write_llava_instruct(tmp_path)
    data = json.loads(path.read_text())
    data[0]["conversations"][1]["from"] = "human"
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedDataError, match="id '000000000000'.*expected 'human' then 'gpt'"):
        LlavaInstructDataModule(root=str(tmp_path), backbone="tiny-llava", num_val=0).setup("fit")
