import json

import pytest

from lightning_ssd.data.synth.benchmark import SyntheticConfig
from lightning_ssd.data.synth.writer import MARKER, image_name, write_benchmark

CONFIG = SyntheticConfig(num_train=4, num_val=2, num_test=2, image_size=32)


def test_writes_official_formats_once(tmp_path):
    root = tmp_path / "bench"
    assert write_benchmark(CONFIG, root) is True
    karpathy = json.loads((root / "dataset_coco.json").read_text())["images"]
    assert [e["split"] for e in karpathy] == ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    assert all((root / e["filepath"] / e["filename"]).is_file() for e in karpathy)
    visdial = json.loads((root / "visdial_1.0_val.json").read_text())["data"]
    assert len(visdial["dialogs"]) == 2 and len(visdial["dialogs"][0]["dialog"][0]["answer_options"]) == 100
    questions = json.loads((root / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    assert len(questions) == 2 * CONFIG.questions_per_image
    assert (root / image_name("test", 20_000_001)).is_file()
    # Nothing left behind next to it, and a second call is a no-op.
    assert [p.name for p in tmp_path.iterdir()] == ["bench"]
    stamp = (root / MARKER).stat().st_mtime_ns
    assert write_benchmark(CONFIG, root) is False and (root / MARKER).stat().st_mtime_ns == stamp


def test_never_overwrites_something_else(tmp_path):
    write_benchmark(CONFIG, tmp_path / "bench")
    with pytest.raises(FileExistsError, match="different settings"):
        write_benchmark(SyntheticConfig(num_train=5, num_val=2, num_test=2, image_size=32), tmp_path / "bench")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"no {MARKER}"):
        write_benchmark(CONFIG, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    from lightning_ssd.data.synth import writer

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_visdial", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_benchmark(CONFIG, tmp_path / "bench")
    assert list(tmp_path.iterdir()) == []
