import pytest

from lightning_ssd.data.io import MalformedDataError
from lightning_ssd.data.llava_bench import LlavaBenchDataModule
from tests.data.fixtures import write_jsonl, write_llava_bench


def test_questions_with_gpt4_answers(tmp_path):
    write_llava_bench(tmp_path)
    dm = LlavaBenchDataModule(root=str(tmp_path), backbone="tiny-llava")
    dm.prepare_data()
    dm.setup("test")
    records = dm.datasets["test"].records
    assert [(r.query, r.references) for r in records] == [
        (f"Describe thing {q}.", (f"Thing {q} is a cat.",)) for q in range(3)]
    assert next(iter(dm.test_dataloader()))["task"] == "instruct"


def test_question_without_answer(tmp_path):
    write_llava_bench(tmp_path)
    write_jsonl(tmp_path / "answers_gpt4.jsonl", [{"question_id": 0, "text": "x"}, {"question_id": 1, "text": "y"}])
    with pytest.raises(MalformedDataError, match="question_id 2 has no line in answers_gpt4.jsonl"):
        LlavaBenchDataModule(root=str(tmp_path), backbone="tiny-llava").setup("test")


def test_broken_jsonl_line(tmp_path):
    path = write_llava_bench(tmp_path)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(MalformedDataError, match="questions.jsonl line 4 is not valid JSON"):
        LlavaBenchDataModule(root=str(tmp_path), backbone="tiny-llava").setup("test")
