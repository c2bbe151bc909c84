"""The shipped experiment configs (`experiments/`) and the fragments the end-to-end tools derive from them."""

from __future__ import annotations

from pathlib import Path

import yaml

from lightning_ssd.files import atomic_write_text

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SWEEP_CALLBACK = ".DraftLengthSweep"


def callbacks_without_sweep(source: str, path: Path) -> Path:
    """Writes to `path` a config fragment with the callbacks of `experiments/_base/callbacks/<source>` less the
    sweep over d (for runs whose sweep happens in a stage of its own); returns `path`."""
    callbacks = yaml.safe_load((EXPERIMENTS / "_base" / "callbacks" / source).read_text())
    kept = [c for c in callbacks if not c["class_path"].endswith(SWEEP_CALLBACK)]
    atomic_write_text(path, yaml.safe_dump({"trainer": {"callbacks": kept}}, sort_keys=False))
    return path
