"""`generate` over a folder of one's own images: JSONL out, bad images skipped and named, SSD = greedy = HF."""

import json
import shlex

import pytest
import torch
from PIL import Image

from lightning_ssd.backbones import load_backbone, load_processor
from lightning_ssd.data.collate import VLCollator
from lightning_ssd.data.prompts import CAPTION_INSTRUCTION
from lightning_ssd.data.readers.base import Record, Sample
from lightning_ssd.errors import UsageError
from lightning_ssd.models.checkpoint import save_draft
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.tools.generate import _parser
from lightning_ssd.tools.generate import main as generate_main

NAME = "tiny-llava"
MAX_NEW = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    images = root / "images"
    (images / "more").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        pixels = (torch.rand(24, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(images / ("more" if i % 2 else "") / f"img{i}.{'PNG' if i == 3 else 'jpg'}")
    (images / "broken.jpg").write_bytes(b"garbage")
    (images / "readme.txt").write_text("not an image")
    vlm = load_backbone(NAME)
    torch.manual_seed(0)
    save_draft(ImitationNetwork(vlm.decoder.hidden_size, attention=True, residual=False).eval(), 2, vlm, NAME,
               root / "draft")
    return root, images, vlm


def _run(root, images, name, *extra):
    out = root / f"{name}.jsonl"
    generate_main(["--backbone", NAME, "--images", str(images), "--output", str(out), "--batch-size", "2",
                   "--max-new-tokens", str(MAX_NEW), *extra])
    return [json.loads(line) for line in out.read_text().splitlines()]


def _reference(vlm, lines):
    """transformers' own greedy generate on the same batches of two the tool decodes."""
    processor = load_processor(NAME)
    collate = VLCollator(processor, vlm.family, "caption")
    tokens = []
    for start in range(0, len(lines), 2):
        chunk = lines[start : start + 2]
        batch = collate([Sample(Image.open(line["image"]).convert("RGB"), Record(line["image"], line["id"]))
                         for line in chunk])
        with torch.no_grad():
            out = vlm.model.generate(pixel_values=batch["pixel_values"], input_ids=batch["prompt_input_ids"],
                                     attention_mask=batch["prompt_attention_mask"], do_sample=False,
                                     max_new_tokens=MAX_NEW)
        for row in out[:, batch["prompt_input_ids"].shape[1]:].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in vlm.eos_token_id), len(row))
            tokens.append(row[:end])
    return tokens


def test_ssd_writes_what_greedy_and_transformers_write(setup, capsys):
    root, images, vlm = setup
    ssd = _run(root, images, "ssd", "--draft-head", str(root / "draft"), "--draft", "3")
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    assert "5 images, 1 skipped" in captured.out
    greedy = _run(root, images, "greedy", "--mode", "greedy")
    assert [line["image"].split("/")[-1] for line in ssd] == ["img0.jpg", "img2.jpg", "img4.jpg", "img1.jpg",
                                                              "img3.PNG"]  # sorted paths: images/ then more/
    assert [line["tokens"] for line in ssd] == [line["tokens"] for line in greedy] == _reference(vlm, ssd)
    assert all(set(line) >= {"id", "image", "prompt", "text", "tokens"} for line in ssd)
    assert all(line["tau"] >= 1 and len(line["accepted"]) >= 1 for line in ssd)
    assert ssd[0]["text"] == load_processor(NAME).tokenizer.decode(ssd[0]["tokens"], skip_special_tokens=True).strip()


def test_a_jsonl_line_without_a_prompt_is_written_with_a_null_prompt(setup):
    root, images, _ = setup
    lines = {}
    for name, second in [("without", {}), ("instructed", {"prompt": CAPTION_INSTRUCTION})]:
        path = root / f"{name}_requests.jsonl"
        rows = [{"image": "images/img0.jpg", "prompt": "Count the shapes.", "id": 1},
                {"image": "images/img2.jpg", **second}]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        lines[name] = _run(root, path, name, "--mode", "greedy")
    assert [line["prompt"] for line in lines["without"]] == ["Count the shapes.", None]
    assert [line["prompt"] for line in lines["instructed"]] == ["Count the shapes.", CAPTION_INSTRUCTION]
    # decoded beside a prompted line, the line without one is given the caption instruction
    assert [line["tokens"] for line in lines["without"]] == [line["tokens"] for line in lines["instructed"]]


def test_help_shows_the_example_as_written_and_it_parses(capsys):
    with pytest.raises(SystemExit):
        generate_main(["--help"])
    example = ("    python -m lightning_ssd generate --backbone runs/demo/finetune/backbone \\\n"
               "        --draft-head runs/demo/draft --images photos/ --output captions.jsonl\n")
    assert example in capsys.readouterr().out  # two lines, joined by the shell's line continuation
    words = shlex.split(example.replace(" \\\n", " "))
    assert words[:4] == ["python", "-m", "lightning_ssd", "generate"]
    args = _parser().parse_args(words[4:])
    assert (args.backbone, args.draft_head, args.images, args.output) == (
        "runs/demo/finetune/backbone", "runs/demo/draft", "photos/", "captions.jsonl")


def test_every_option_has_help():
    assert [a.dest for a in _parser()._actions if not a.help] == []


def test_sampling_is_reproducible_by_seed(setup):
    root, images, _ = setup
    runs = [_run(root, images, f"s{i}", "--draft-head", str(root / "draft"), "--do-sample", "--temperature", "1.5",
                 "--seed", str(seed)) for i, seed in enumerate([3, 3, 4])]
    tokens = [[line["tokens"] for line in run] for run in runs]
    assert tokens[0] == tokens[1] and tokens[0] != tokens[2]


def test_nothing_readable_writes_nothing(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    out = tmp_path / "out.jsonl"
    with pytest.raises(UsageError, match="could be read"):
        generate_main(["--backbone", NAME, "--mode", "greedy", "--images", str(tmp_path), "--output", str(out)])
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.png"]


@pytest.mark.parametrize(("bad", "message"), [(["--batch-size", "0"], "batch-size"), ([], "needs --draft-head"),
                                              (["--draft", "x"], "^--draft must be an integer d >= 1 or 'dynamic', "
                                                                 "got 'x'")])
def test_impossible_settings(tmp_path, bad, message):
    with pytest.raises(UsageError, match=message):
        generate_main(["--backbone", NAME, "--images", str(tmp_path), "--output", str(tmp_path / "o.jsonl"), *bad])


def test_threads_sets_torch_threads(setup, capsys):
    root, images, _ = setup
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _run(root, images, "threads", "--mode", "greedy", "--threads", "2")
        assert torch.get_num_threads() == 2 and "on 2 CPU threads" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
