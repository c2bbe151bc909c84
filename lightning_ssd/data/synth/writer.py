"""Writing the synthetic benchmark to disk in the official formats, once and atomically.

Layout under ``root`` (the official file names, so the official readers load it):

- ``dataset_coco.json`` (Karpathy split) and images ``train2014/``, ``val2014/``, ``test2014/``, named
  ``COCO_<folder>_<12-digit id>.png`` (PNG, lossless, so pixels read back exactly);
- ``v2_OpenEnded_mscoco_<folder>_questions.json`` and ``v2_mscoco_<folder>_annotations.json`` (VQAv2,
  10 identical answers per question);
- ``visdial_1.0_<split>.json`` (VisDial v1.0; unlike the official test file, every round has its answer);
- ``llava_detail_<split>.json`` (LLaVA-Instruct format, one "describe in detail" turn per image);
- ``synthetic_benchmark.json``: the generating config, written last; a folder without it is not ours.

Everything is written to a temporary sibling folder and renamed into place, so a crash or a concurrent
writer never leaves a half-written benchmark behind.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lightning_ssd.data.prompts import DETAIL_INSTRUCTION
from lightning_ssd.data.synth.benchmark import SPLITS, SyntheticConfig, SyntheticItem, generate_split

MARKER = "synthetic_benchmark.json"
FORMAT_VERSION = 1
IMAGE_FOLDERS: dict[str, str] = {"train": "train2014", "val": "val2014", "test": "test2014"}


def image_name(split: str, image_id: int) -> str:
    folder = IMAGE_FOLDERS[split]
    return f"{folder}/COCO_{folder}_{image_id:012d}.png"


def _marker(config: SyntheticConfig) -> dict[str, Any]:
    fields = dataclasses.asdict(config)
    for name in ("test_domain", "train_domain"):
        if fields[name] is None:  # benchmarks written before the zero-shot splits keep their marker
            del fields[name]
    return {"format_version": FORMAT_VERSION, "config": fields}


def is_written(root: Path, config: SyntheticConfig) -> bool:
    """True if ``root`` holds this exact benchmark; raises if it holds something else."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return False
    marker = root / MARKER
    if not marker.is_file():
        raise FileExistsError(f"{root} exists but has no {MARKER}: it is not a synthetic benchmark written by "
                              "lightning_ssd. Choose another root, or delete the folder")
    found = json.loads(marker.read_text(encoding="utf-8"))
    if found != _marker(config):
        raise FileExistsError(f"{root} holds a synthetic benchmark generated with different settings "
                              f"({marker}: {found['config']}, asked for {dataclasses.asdict(config)}). "
                              "Choose another root, or delete the folder to regenerate it")
    return True


def write_benchmark(config: SyntheticConfig, root: Path) -> bool:
    """Generate and write the benchmark at ``root`` unless it is already there; True if this call wrote it."""
    root = Path(root)
    if is_written(root, config):
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _write_all(config, tmp)
        try:
            tmp.rename(root)
        except OSError:
            # Another process finished first: keep its copy if it is the same benchmark.
            if not is_written(root, config):
                raise
            return False
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _write_all(config: SyntheticConfig, out: Path) -> None:
    karpathy: list[dict[str, Any]] = []
    for split in SPLITS:
        items = generate_split(config, split)
        (out / IMAGE_FOLDERS[split]).mkdir()
        for item in items:
            item.image.save(out / image_name(split, item.image_id), format="PNG")
        karpathy += [_karpathy_entry(split, item) for item in items]
        folder = IMAGE_FOLDERS[split]
        questions, annotations = _vqa(items)
        _dump(out / f"v2_OpenEnded_mscoco_{folder}_questions.json", {"data_subtype": folder, "questions": questions})
        _dump(out / f"v2_mscoco_{folder}_annotations.json", {"data_subtype": folder, "annotations": annotations})
        _dump(out / f"visdial_1.0_{split}.json", _visdial(split, items))
        _dump(out / f"llava_detail_{split}.json", [_llava_entry(split, item) for item in items])
    _dump(out / "dataset_coco.json", {"dataset": "synthetic", "images": karpathy})
    _dump(out / MARKER, _marker(config))


def _dump(path: Path, obj: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(obj))  # json.dumps uses the C encoder; json.dump to a file does not
        f.flush()
        os.fsync(f.fileno())


def _karpathy_entry(split: str, item: SyntheticItem) -> dict[str, Any]:
    folder, filename = image_name(split, item.image_id).split("/")
    sentids = [item.image_id * 10 + j for j in range(len(item.captions))]
    return {"filepath": folder, "filename": filename, "imgid": item.image_id, "split": split, "cocoid": item.image_id,
            "sentids": sentids,
            "sentences": [{"raw": c, "tokens": c.split(), "imgid": item.image_id, "sentid": s}
                          for c, s in zip(item.captions, sentids, strict=True)]}


def _vqa(items: list[SyntheticItem]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    questions, annotations = [], []
    for item in items:
        for k, qa in enumerate(item.questions):
            qid = item.image_id * 10 + k
            questions.append({"image_id": item.image_id, "question": qa.question, "question_id": qid})
            answer_type = "yes/no" if qa.answer in ("yes", "no") else "number" if "how many" in qa.question else "other"
            annotations.append({"image_id": item.image_id, "question_id": qid, "question_type": qa.question.split()[0],
                                "answer_type": answer_type, "multiple_choice_answer": qa.answer,
                                "answers": [{"answer": qa.answer, "answer_confidence": "yes", "answer_id": a + 1}
                                            for a in range(10)]})
    return questions, annotations


def _visdial(split: str, items: list[SyntheticItem]) -> dict[str, Any]:
    questions: dict[str, int] = {}
    answers: dict[str, int] = {}
    dialogs = []
    for item in items:
        rounds = []
        for r in item.dialog:
            q = questions.setdefault(r.question, len(questions))
            options = [answers.setdefault(c, len(answers)) for c in r.candidates]
            rounds.append({"question": q, "answer": options[r.gt_index], "answer_options": options,
                           "gt_index": r.gt_index})
        dialogs.append({"image_id": item.image_id, "caption": item.captions[0], "dialog": rounds})
    return {"version": "1.0", "split": split,
            "data": {"questions": list(questions), "answers": list(answers), "dialogs": dialogs}}


def _llava_entry(split: str, item: SyntheticItem) -> dict[str, Any]:
    return {"id": str(item.image_id), "image": image_name(split, item.image_id),
            "conversations": [{"from": "human", "value": f"<image>\n{DETAIL_INSTRUCTION}"},
                              {"from": "gpt", "value": item.description}]}
