"""`python -m lightning_ssd serve`: its help, and settings it refuses before any process starts."""

import pytest

from lightning_ssd.errors import UsageError
from lightning_ssd.tools.serve import main as serve_main


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--backbone", "--draft-head", "--n", "--mode", "--draft", "--host", "--port", "--max-batch-size",
                 "--max-queue", "--max-tokens-cap", "--api-key", "--image-root", "--threads", "--workers",
                 "--devices", "--prefill-batch", "--compile"):
        assert flag in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--backbone", "tiny-blip2-t5"], "Flan-T5"),
    (["--backbone", "tiny-llava", "--draft", "x"], "--draft must be"),
    (["--backbone", "tiny-llava", "--mode", "greedy", "--n", "1"], "--mode greedy serves the full model alone"),
    (["--backbone", "tiny-llava", "--host", "192.168.1.5"], "--host must be"),
    (["--backbone", "tiny-llava", "--port", "80"], "--port must be"),
    (["--backbone", "tiny-llava", "--draft-head", "/nonexistent/draft"], "not found"),
    (["--backbone", "/nonexistent/model"], "neither a preset"),
    (["--backbone", "tiny-llava", "--workers", "0"], "--workers and --devices must be >= 1"),
    (["--backbone", "tiny-llava", "--devices", "2"], "--devices is for --accelerator cuda"),
    (["--backbone", "tiny-llava", "--prefill-batch", "9"], r"--prefill-batch must be in \[1, --max-batch-size\]"),
])
def test_impossible_settings_are_refused_at_once(argv, message):
    with pytest.raises(UsageError, match=message):
        serve_main(argv)


def test_the_image_root_must_be_a_folder(tmp_path):
    with pytest.raises(UsageError, match="is not a folder"):
        serve_main(["--backbone", "tiny-llava", "--image-root", str(tmp_path / "missing")])
