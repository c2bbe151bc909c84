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


QWEN_HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.mark.parametrize(("family", "task", "query", "expected"), [
    ("qwen2.5-vl", "caption", None,
     f"{QWEN_HEAD}{QWEN_IMAGE}Describe the image in one sentence.<|im_end|>\n<|im_start|>assistant\n"),
    ("qwen2.5-vl", "vqa", "what is it?", f"{QWEN_HEAD}{QWEN_IMAGE}what is it?\nAnswer the question using a single "
     "word or phrase.<|im_end|>\n<|im_start|>assistant\n"),
    ("llava-next", "caption", None, "USER: <image>\nDescribe the image in one sentence. ASSISTANT:"),
])
def test_single_turn_of_the_new_families(family, task, query, expected):
    image_token = "<|image_pad|>" if family == "qwen2.5-vl" else "<image>"
    assert build_prompt(family, task, query, image_token=image_token) == expected


def test_qwen_dialog_is_its_chat_template():
    history = (("is it red?", "yes"),)
    assert build_prompt("qwen2.5-vl", "visdial", "where is it?", "a red dot", history, "<|image_pad|>") == (
        f"{QWEN_HEAD}{QWEN_IMAGE}a red dot\nis it red?<|im_end|>\n<|im_start|>assistant\nyes<|im_end|>\n"
        "<|im_start|>user\nwhere is it?<|im_end|>\n<|im_start|>assistant\n")


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
