"""Writers of tiny benchmark fixtures in the official on-disk formats (a few entries, 16-px images)."""

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def corrupt(path: Path) -> None:
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a whole jpeg")


def dump(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def truncate(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")


def write_karpathy(root: Path) -> Path:
    """6 images: 2 train, 1 restval, 2 val, 1 test; 2-3 captions each."""
    images = []
    for i, split in enumerate(["train", "train", "restval", "val", "val", "test"]):
        folder = "train2014" if split == "train" else "val2014"
        name = f"COCO_{folder}_{i + 1:012d}.jpg"
        write_image(root / folder / name, i)
        sentences = [{"raw": f"A photo number {i} with {k} cats.", "tokens": [], "imgid": i, "sentid": 10 * i + k}
                     for k in range(2 + i % 2)]
        images.append({"filepath": folder, "filename": name, "imgid": i, "split": split, "sentences": sentences,
                       "sentids": [s["sentid"] for s in sentences], "cocoid": i + 1})
    return dump(root / "dataset_coco.json", {"images": images, "dataset": "coco"})


def write_nocaps(root: Path) -> Path:
    images, annotations = [], []
    for i, domain in enumerate(["in-domain", "near-domain", "out-domain"]):
        name = f"{i:016x}.jpg"
        write_image(root / "images" / name, i)
        images.append({"id": i, "file_name": name, "domain": domain, "height": 16, "width": 16,
                       "open_images_id": f"{i:016x}"})
        annotations += [{"image_id": i, "id": 10 * i + k, "caption": f"nocaps image {i} caption {k}"}
                        for k in range(10)]
    return dump(root / "nocaps_val_4500_captions.json", {"images": images, "annotations": annotations})


def write_vqav2(root: Path, split: str = "val2014") -> Path:
    questions, annotations = [], []
    for image_id in (42, 43):
        write_image(root / split / f"COCO_{split}_{image_id:012d}.jpg", image_id)
        for k in range(2):
            qid = image_id * 1000 + k
            questions.append({"image_id": image_id, "question": f"What is thing {k}?", "question_id": qid})
            answers = [{"answer": "cat" if a < 7 else "dog", "answer_confidence": "yes", "answer_id": a + 1}
                       for a in range(10)]
            annotations.append({"image_id": image_id, "question_id": qid, "multiple_choice_answer": "cat",
                                "answers": answers, "answer_type": "other", "question_type": "what is"})
    dump(root / f"v2_mscoco_{split}_annotations.json", {"annotations": annotations, "data_subtype": split})
    return dump(root / f"v2_OpenEnded_mscoco_{split}_questions.json", {"questions": questions, "data_subtype": split})


def write_visdial(root: Path, split: str = "val", image_dir: str = "VisualDialog_val2018") -> Path:
    questions = [f"is there thing {k}" for k in range(3)]
    answers = [f"answer {a}" for a in range(120)]
    dialogs = []
    for image_id in (7, 8):
        write_image(root / image_dir / f"VisualDialog_{split}2018_{image_id:012d}.jpg", image_id)
        rounds = [{"question": r, "answer": r + image_id, "answer_options": list(range(r, r + 100)),
                   "gt_index": image_id} for r in range(3)]
        dialogs.append({"image_id": image_id, "caption": f"a caption of image {image_id}", "dialog": rounds})
    return dump(root / f"visdial_1.0_{split}.json", {"version": "1.0", "split": f"{split}2018",
                                                     "data": {"questions": questions, "answers": answers,
                                                              "dialogs": dialogs}})


def write_llava_instruct(root: Path, n: int = 4) -> Path:
    entries = []
    for i in range(n):
        name = f"{i:012d}.jpg"
        write_image(root / "train2017" / name, i)
        entries.append({"id": f"{i:012d}", "image": name, "conversations": [
            {"from": "human", "value": f"<image>\nWhat is in picture {i}?"},
            {"from": "gpt", "value": f"Picture {i} shows a cat."},
            {"from": "human", "value": "What colour is it?"},
            {"from": "gpt", "value": "It is black."},
        ]})
    return dump(root / "llava_instruct_150k.json", entries)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_llava_bench(root: Path) -> Path:
    questions, answers = [], []
    for q in range(3):
        name = f"{q // 2 + 1:03d}.jpg"
        write_image(root / "images" / name, q)
        questions.append({"question_id": q, "image": name, "text": f"Describe thing {q}.", "category": "detail"})
        answers.append({"question_id": q, "prompt": f"Describe thing {q}.", "text": f"Thing {q} is a cat.",
                        "answer_id": f"a{q}", "model_id": "gpt-4-0314", "metadata": {}})
    write_jsonl(root / "answers_gpt4.jsonl", answers)
    return write_jsonl(root / "questions.jsonl", questions)


def write_mmvet(root: Path) -> Path:
    data = {}
    for k in range(3):
        name = f"v1_{k}.png"
        write_image(root / "images" / name, k)
        data[f"v1_{k}"] = {"imagename": name, "question": f"What is x in equation {k}?", "answer": f"{k} <OR> {k}.0",
                           "capability": ["ocr", "math"]}
    return dump(root / "mm-vet.json", data)
