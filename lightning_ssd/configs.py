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
    return _write_callbacks(path, [c for c in callbacks if not c["class_path"].endswith(SWEEP_CALLBACK)])


def callbacks_with_exit_rule(config: Path, rule: str, path: Path) -> Path:
    """Writes to `path` a config fragment with the callbacks of the stage config `config`, its ChooseLayerCallback
    choosing n by `rule` (runs that keep a rule of their own whatever the config's default); returns `path`."""
    callbacks = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    if isinstance(callbacks, str):  # a file of their own, relative to the config
        callbacks = yaml.safe_load((config.parent / callbacks).read_text())
    chooser = [c for c in callbacks if c["class_path"].endswith(".ChooseLayerCallback")]
    if not chooser:
        raise ValueError(f"{config}: no ChooseLayerCallback among trainer.callbacks; there is no n rule to set")
    for c in chooser:
        c.setdefault("init_args", {})["rule"] = rule
    return _write_callbacks(path, callbacks)


def _write_callbacks(path: Path, callbacks: list[dict]) -> Path:
    """Writes a config fragment that sets `trainer.callbacks` to `callbacks`; returns `path`."""
    atomic_write_text(path, yaml.safe_dump({"trainer": {"callbacks": callbacks}}, sort_keys=False))
    return path
