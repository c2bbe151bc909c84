"""The README stays a short front door whose quick start runs, and the API reference covers every module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_PATHS = 'backbone, draft = "runs/demo/finetune/backbone", "runs/demo/draft"'


def _quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_is_at_most_15_kb():
    assert README.stat().st_size <= 15 * 1024


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2.5-vl"])
def test_readme_quick_start_runs_on_a_preset(preset, tmp_path, monkeypatch, capsys):
    from lightning_ssd.backbones import load_backbone
    from lightning_ssd.models.checkpoint import save_draft
    from lightning_ssd.models.components.imitation import ImitationNetwork

    code = _quick_start()
    assert DEMO_PATHS in code, "the quick start no longer names the demo's outputs; update this test with it"
    vlm = load_backbone(preset)
    save_draft(ImitationNetwork(vlm.decoder.hidden_size, attention=True), 2, vlm, preset, tmp_path / "draft")
    images = []
    for i, size in enumerate([(64, 48), (40, 40)]):
        images.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", size, (200, 30 * i, 30)).save(images[-1])
    monkeypatch.setattr("sys.argv", ["caption.py", *images])

    exec(code.replace(DEMO_PATHS, f'backbone, draft = "{preset}", "{tmp_path / "draft"}"'), {"__name__": "__main__"})

    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("tau ") and "alpha" in lines[-1]


def _modules(package: Path) -> set[str]:
    return {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in package.rglob("*.py")
        if p.name != "__init__.py"
    }


def test_every_module_has_a_place_in_the_api_reference():
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    package = ROOT / "lightning_ssd"
    missing = sorted(_modules(package) - documented)
    assert not missing, f"add these modules to a page under docs/api/: {missing}"


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert not sorted(p for p in pages if p not in nav)
