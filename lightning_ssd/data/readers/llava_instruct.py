"""LLaVA-Instruct-150K conversations: one record per assistant turn, earlier turns as history."""

from pathlib import Path
from typing import Any

from lightning_ssd.data.io import MalformedDataError, existing_image, nonempty, parse_entries, read_json
from lightning_ssd.data.readers.base import Record

DATASET = "LLaVA-Instruct-150K"
IMAGE_TAG = "<image>"


def load_llava_instruct(conversation_file: Path, image_dir: Path, *, entries: slice = slice(None),
                        skip_bad: bool = False, dataset: str = DATASET) -> list[Record]:
    """One record per ``gpt`` turn: the turns before it as history, its ``human`` turn as query.

    Args:
        conversation_file: ``llava_instruct_150k.json``: a list of ``{id, image, conversations: [{from:
            "human"|"gpt", value}]}``; the first human turn carries ``<image>``, which is removed here and
            put back by the prompt template.
        image_dir: folder the ``image`` names are relative to (COCO ``train2017/`` for LLaVA-Instruct).
        entries: the conversations to read, by position in the file (to hold some out).
        skip_bad: skip (and count in the log) conversations with a missing key, no image or turns that do
            not alternate human/gpt.
        dataset: the benchmark's name in messages (the synthetic benchmark reuses this reader).
    """
    data = read_json(conversation_file, dataset)
    if not isinstance(data, list):
        raise MalformedDataError(f"{dataset}: {conversation_file} must hold a JSON list of conversations")

    def parse(entry: dict[str, Any]) -> list[Record]:
        path = existing_image(image_dir / entry["image"])
        turns = entry["conversations"]
        if not turns or len(turns) % 2:
            raise ValueError("'conversations' must hold human/gpt pairs")
        history: list[tuple[str, str]] = []
        records = []
        for k in range(0, len(turns), 2):
            human, gpt = turns[k], turns[k + 1]
            if (human["from"], gpt["from"]) != ("human", "gpt"):
                raise ValueError(f"turns {k} and {k + 1} are from {human['from']!r} and {gpt['from']!r}, "
                                 "expected 'human' then 'gpt'")
            query = nonempty(human["value"].replace(IMAGE_TAG, ""), "value")
            answer = nonempty(gpt["value"], "value")
            records.append(Record(path, f"{entry['id']}-{k // 2}", query=query, target=answer, references=(answer,),
                                  history=tuple(history)))
            history.append((query, answer))
        return records

    records = parse_entries(data[entries], parse, dataset=dataset, file=conversation_file, skip_bad=skip_bad,
                            describe=lambda e: f"id {e.get('id')!r}" if isinstance(e, dict) else repr(e)[:80])
    if not records:
        raise MalformedDataError(f"{dataset}: {conversation_file} has no usable conversations")
    return records
