"""Prompt templates per backbone family.

BLIP-2 (OPT and Flan-T5) is prompted the way its paper and LAVIS do: "a photo of" for captions,
"Question: {q} Answer:" for questions. LLaVA-1.5 uses its conversation template
"USER: <image>\\n{prompt} ASSISTANT:", the answer following after a space and ended by eos; earlier
turns of a conversation stay in the prompt, each answer closed by eos as in LLaVA's training data.
"""

from collections.abc import Sequence

FAMILIES: tuple[str, ...] = ("blip2-opt", "blip2-t5", "llava")

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
        family: "blip2-opt", "blip2-t5" or "llava".
        task: "caption" for plain captioning (``query`` unused), "vqa" for short answers, anything else
            for free-form instructions (dialog, long description, LLaVA conversations).
        query: the current question or instruction.
        context: text shown before the conversation (VisDial's caption).
        history: earlier (question, answer) turns, oldest first.
        image_token: LLaVA's image placeholder, expanded by the processor. BLIP-2's processor adds its
            query-token placeholders itself, so BLIP-2 prompts carry none.
        eos_token: closes each earlier LLaVA answer.
    """
    check_family(family)
    if task == "caption":
        query = None if family != "llava" else CAPTION_INSTRUCTION
    elif query is None:
        raise ValueError(f"task {task!r} needs a query (question or instruction)")
    elif task == "vqa" and family == "llava":
        query = f"{query}\n{SHORT_ANSWER_INSTRUCTION}"
    if family == "llava":
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


def prompt_vocabulary() -> list[str]:
    """Every fixed prompt string, for training a tokenizer that knows them."""
    return [BLIP2_CAPTION_PROMPT, CAPTION_INSTRUCTION, DETAIL_INSTRUCTION, SHORT_ANSWER_INSTRUCTION,
            "Question: Answer:", "USER: ASSISTANT:"]
