"""A user's own images: folders, globs and JSONL files, with errors that name the file."""

import json

import pytest
from PIL import Image

from lightning_ssd.data.images import ImagesDataModule
from lightning_ssd.data.io import DatasetFileError, MalformedDataError
from lightning_ssd.data.readers.images import find_images, load_image_records, task_of, with_instruction
from tests.data.helpers import tiny_processor


def _image(path, color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), color).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    _image(root / "b.jpg")
    _image(root / "a.PNG")
    _image(root / "deep" / "c.JpEg")
    (root / "notes.txt").write_text("not an image")
    (root / "deep" / "model.bin").write_bytes(b"\0")
    return root


def test_a_folder_is_searched_recursively_and_other_files_are_ignored(folder):
    assert [p.relative_to(folder).as_posix() for p in find_images(folder)] == ["a.PNG", "b.jpg", "deep/c.JpEg"]
    records = load_image_records(folder)
    assert [r.sample_id for r in records] == ["a.PNG", "b.jpg", "deep/c.JpEg"]
    assert task_of(records) == "caption" and all(r.query is None for r in records)


def test_a_glob_and_one_prompt(folder):
    records = load_image_records(f"{folder}/**/*.[jJ]*", prompt="What colour is it?")  # glob case is exact
    assert [r.image.name for r in records] == ["b.jpg", "c.JpEg"]
    assert task_of(records) == "instruct" and {r.query for r in records} == {"What colour is it?"}


def test_jsonl_rows_with_relative_paths_prompts_and_ids(tmp_path, folder):
    path = tmp_path / "requests.jsonl"
    rows = [{"image": "photos/b.jpg", "prompt": "Count the shapes.", "id": 7}, {"image": str(folder / "a.PNG")}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = load_image_records(path)
    assert [(r.image, r.sample_id, r.query) for r in records] == [
        (folder / "b.jpg", 7, "Count the shapes."),
        (folder / "a.PNG", str(folder / "a.PNG"), None),  # a row without a prompt
    ]
    assert task_of(records) == "instruct"
    # decoded in one task with the prompted row: with the caption instruction
    assert [r.query for r in with_instruction(records)] == ["Count the shapes.", "Describe the image in one sentence."]
    assert with_instruction(records[1:]) == records[1:]  # no row has a prompt: plain captioning


def test_bad_jsonl_lines_name_the_file_and_the_line(tmp_path, folder):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"image": str(folder / "b.jpg")}) + "\n{not json\n")
    with pytest.raises(MalformedDataError, match=r"r.jsonl line 2 is not valid JSON"):
        load_image_records(path)
    path.write_text(json.dumps({"image": str(folder / "gone.jpg")}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(MalformedDataError, match=r"gone.jpg is missing"):
        load_image_records(path)
    with pytest.raises(MalformedDataError, match="holds no usable entries"):
        load_image_records(path, skip_bad=True)  # both entries are bad: none is left
    path.write_text(json.dumps({"image": str(folder / "gone.jpg")}) + "\n" + json.dumps({"image": "photos/b.jpg"}))
    assert [r.image for r in load_image_records(path, skip_bad=True)] == [folder / "b.jpg"]


@pytest.mark.parametrize("spec", ["nowhere", "empty"])
def test_nothing_to_read_is_a_clear_error(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(DatasetFileError, match="does not exist|no image files"):
        load_image_records(tmp_path / spec)


def test_datamodule_batches_carry_paths_and_prompts(folder):
    _image(folder / "broken.jpg").write_bytes(b"garbage")
    dm = ImagesDataModule(str(folder), prompt="What is it?", processor=tiny_processor("llava"), batch_size=2,
                          skip_bad_samples=True)
    dm.setup("predict")
    batches = list(dm.predict_dataloader())
    images = [p for b in batches for p in b["images"]]
    assert [p.split("/")[-1] for p in images] == ["a.PNG", "b.jpg", "c.JpEg"]  # the broken file is skipped
    assert all(q == "What is it?" for b in batches for q in b["queries"])
    assert batches[0]["prompt_input_ids"].shape[0] == 2
    strict = ImagesDataModule(str(folder), processor=tiny_processor("llava"), batch_size=8)
    strict.setup("predict")
    with pytest.raises(MalformedDataError, match="broken.jpg"):
        list(strict.predict_dataloader())


def test_predict_over_a_folder_writes_one_line_per_readable_image(folder, tmp_path):
    import torch

    from lightning_ssd.cli import cli_main
    from tests.models.helpers import tiny_config, write_config

    _image(folder / "broken.jpg").write_bytes(b"garbage")
    config = tiny_config(tmp_path / "run", backbone="tiny-llava", logger=False, model_args={"max_new_tokens": 4})
    config["data"] = {"class_path": "lightning_ssd.data.ImagesDataModule",
                      "init_args": {"images": str(folder), "eval_batch_size": 2, "skip_bad_samples": True}}
    torch.set_num_threads(1)
    cli_main(["predict", "--config", str(write_config(tmp_path / "c.yaml", config))])
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a.PNG", "b.jpg", "deep/c.JpEg"]  # dataset order, the broken file skipped
    assert all(r["image"].startswith(str(folder)) and r["prompt"] is None and r["tokens"] for r in rows)
