"""Prompt templates per backbone family.

BLIP-2 (OPT and Flan-T5) is prompted the way its paper and LAVIS do: "a photo of" for captions,
"Question: {q} Answer:" for questions. LLaVA-1.5 uses its conversation template
"USER: <image>\\n{prompt} ASSISTANT:", the answer following after a space and ended by eos; earlier
turns of a conversation stay in the prompt, each answer closed by eos as in LLaVA's training data. LLaVA-NeXT
(its Vicuna checkpoints) keeps that template. Qwen2.5-VL uses its chat template as `apply_chat_template` writes it,
default system message included: "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user
\\n<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\\n<|im_start|>assistant\\n", the answer following
directly and ended by <|im_end|> (the tokenizer's eos).
"""

from collections.abc import Sequence

FAMILIES: tuple[str, ...] = ("blip2-opt", "blip2-t5", "llava", "llava-next", "qwen2.5-vl")
INSTRUCTED = ("llava", "llava-next", "qwen2.5-vl")  # families prompted with instructions in a chat template
QWEN_SYSTEM = "You are a helpful assistant."
QWEN_TURN_END = "<|im_end|>"

BLIP2_CAPTION_PROMPT = "a photo of"
CAPTION_INSTRUCTION = "Describe the image in one sentence."
DETAIL_INSTRUCTION = "Describe the image in detail."
# LLaVA-1.5's instruction for short-answer VQA benchmarks.
SHORT_ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown backbone family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def build_prompt(
    family: str,
    task: str,
    query: str | None = None,
    context: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    image_token: str = "<image>",
    eos_token: str = "</s>",
) -> str:
    """The text prompt of one sample, without the target.

    Args:
        family: one of `FAMILIES`.
        task: "caption" for plain captioning (``query`` unused), "vqa" for short answers, anything else
            for free-form instructions (dialog, long description, LLaVA conversations).
        query: the current question or instruction.
        context: text shown before the conversation (VisDial's caption).
        history: earlier (question, answer) turns, oldest first.
        image_token: the image placeholder (LLaVA's `<image>`, Qwen's `<|image_pad|>`), expanded by the processor.
            BLIP-2's processor adds its query-token placeholders itself, so BLIP-2 prompts carry none.
        eos_token: closes each earlier LLaVA answer (Qwen's turns end on `<|im_end|>` whatever its eos).
    """
    check_family(family)
    if task == "caption":
        query = CAPTION_INSTRUCTION if family in INSTRUCTED else None
    elif query is None:
        raise ValueError(f"task {task!r} needs a query (question or instruction)")
    elif task == "vqa" and family in INSTRUCTED:
        query = f"{query}\n{SHORT_ANSWER_INSTRUCTION}"
    if family == "qwen2.5-vl":
        return _qwen_conversation([*history, (query, None)], context, image_token)
    if family in INSTRUCTED:
        return _llava_conversation([*history, (query, None)], context, image_token, eos_token)
    if query is None:
        return BLIP2_CAPTION_PROMPT
    turns = [f"Question: {q} Answer: {a}" for q, a in history]
    return " ".join([*([context] if context else []), *turns, f"Question: {query} Answer:"])


def _llava_conversation(turns: list[tuple[str, str | None]], context: str | None, image_token: str,
                        eos_token: str) -> str:
    text = ""
    for i, (question, answer) in enumerate(turns):
        if i == 0:
            question = "\n".join([image_token, *([context] if context else []), question])
        text += f"USER: {question} ASSISTANT:"
        if answer is not None:
            text += f" {answer}{eos_token}"
    return text


def _qwen_conversation(turns: list[tuple[str, str | None]], context: str | None, image_token: str) -> str:
    end = QWEN_TURN_END
    text = f"<|im_start|>system\n{QWEN_SYSTEM}{end}\n"
    for i, (question, answer) in enumerate(turns):
        if i == 0:
            image = f"<|vision_start|>{image_token}<|vision_end|>"
            question = image + "\n".join([*([context] if context else []), question])
        text += f"<|im_start|>user\n{question}{end}\n<|im_start|>assistant\n"
        if answer is not None:
            text += f"{answer}{end}\n"
    return text


def answer_end(family: str, eos_token: str) -> str:
    """The token that ends an answer: Qwen's turn end, else the tokenizer's eos."""
    return QWEN_TURN_END if family == "qwen2.5-vl" else eos_token


def target_separator(family: str) -> str:
    """What stands between a prompt and its answer: Qwen's answer starts on the assistant line, others' after a
    space."""
    return "" if family == "qwen2.5-vl" else " "


def prompt_vocabulary() -> list[str]:
    """Every fixed prompt string, for training a tokenizer that knows them."""
    return [BLIP2_CAPTION_PROMPT, CAPTION_INSTRUCTION, DETAIL_INSTRUCTION, SHORT_ANSWER_INSTRUCTION,
            "Question: Answer:", "USER: ASSISTANT:"]
