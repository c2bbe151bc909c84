import pytest

from lightning_ssd.data.prompts import build_prompt


@pytest.mark.parametrize(("family", "task", "query", "expected"), [
    ("blip2-opt", "caption", None, "a photo of"),
    ("blip2-t5", "vqa", "what is it?", "Question: what is it? Answer:"),
    ("llava", "caption", None, "USER: <image>\nDescribe the image in one sentence. ASSISTANT:"),
    ("llava", "vqa", "what is it?",
     "USER: <image>\nwhat is it?\nAnswer the question using a single word or phrase. ASSISTANT:"),
    ("llava", "long", "Describe the image in detail.", "USER: <image>\nDescribe the image in detail. ASSISTANT:"),
])
def test_single_turn(family, task, query, expected):
    assert build_prompt(family, task, query) == expected


def test_dialog_with_context_and_history():
    history = (("is it red?", "yes"), ("is it big?", "no"))
    assert build_prompt("llava", "visdial", "where is it?", "a red dot", history) == (
        "USER: <image>\na red dot\nis it red? ASSISTANT: yes</s>USER: is it big? ASSISTANT: no</s>"
        "USER: where is it? ASSISTANT:")
    assert build_prompt("blip2-opt", "visdial", "where is it?", "a red dot", history) == (
        "a red dot Question: is it red? Answer: yes Question: is it big? Answer: no Question: where is it? Answer:")


def test_errors():
    with pytest.raises(ValueError, match="unknown backbone family 'blip3'"):
        build_prompt("blip3", "caption")
    with pytest.raises(ValueError, match="needs a query"):
        build_prompt("llava", "vqa")
