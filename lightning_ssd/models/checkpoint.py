"""A trained draft outside Lightning: read from an imitation-stage checkpoint, or from a shareable draft folder.

A draft folder (`export_draft`, `python -m lightning_ssd export-draft CKPT OUTDIR`) holds:

  - `config.json`: the imitation network's architecture (class path and arguments), the exit layer n, and the
    fingerprint of the backbone it was trained on, so that loading it for another backbone is refused;
  - `model.safetensors`: the imitation network's weights.

Every loader here accepts either form and checks it against the backbone it will draft for; `load_draft_spec`
reads it as the `DraftSpec` the decoders take.

A checkpoint is read with `torch.load(weights_only=True)`: tensors, plain containers and numbers, and only what
`LIGHTNING_SAFE_GLOBALS` adds. A shared `.ckpt` whose pickle asks for anything else (which could run code) is
refused with `UnsafeCheckpointError`; only `export_draft(..., trust=True)` reads such a file, for its owner.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lightning_ssd.backbones.loading import staged_folder
from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.errors import UserError
from lightning_ssd.models.components.fingerprint import BackboneMismatchError, backbone_fingerprint, check_fingerprint

_PREFIX = "imitation_net."
FORMAT = "lightning_ssd-draft"
CONFIG, WEIGHTS = "config.json", "model.safetensors"


def _build(spec: dict | None, hidden_size: int) -> nn.Module:
    if spec is None:
        from lightning_ssd.models.components.imitation import ImitationNetwork

        return ImitationNetwork(hidden_size)
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(hidden_size, **spec.get("init_args", {}))


class NotACheckpointError(UserError, ValueError):
    """A path given as a trained draft that holds none: not a checkpoint at all (text, empty, truncated), a
    checkpoint of another kind, or a draft folder with a damaged file."""


class UnsafeCheckpointError(UserError, ValueError):
    """A checkpoint whose pickle needs more than weights-only loading allows, so that loading it could run code."""


# What Lightning checkpoints hold beyond torch's weights-only defaults (tensors, storages, OrderedDict, plain
# containers, numbers and strings; optimizer, scheduler, loop and callback states are made of these):
# save_hyperparameters keeps a module's or datamodule's arguments as given, and a path given from Python is a Path.
LIGHTNING_SAFE_GLOBALS = (pathlib.PosixPath,)
_SHARE = "python -m lightning_ssd export-draft"


def _unsafe(path: Path, needs: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path} needs more than weights to load ({needs}), which could run code: it is refused. Share a draft as "
        f"a folder written by `{_SHARE} CKPT OUTDIR` (safetensors); if you wrote this file yourself and trust it, "
        f"convert it with `{_SHARE} --trust {path} OUTDIR` and use OUTDIR"
    )


def load_checkpoint(path: str | Path, trust: bool = False) -> Any:
    """The object in a torch checkpoint file, read with `weights_only=True` and `LIGHTNING_SAFE_GLOBALS` unless
    `trust` (which can run any code the file holds: only for one's own files).

    Raises:
        NotACheckpointError: the file is not one written by `torch.save` (text, empty, truncated, damaged).
        UnsafeCheckpointError: the file needs more than `weights_only` loading allows (names what it needs).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; an empty, text or cut-off file is none
        raise NotACheckpointError(f"{path} is not a checkpoint written by torch.save (not a whole zip archive: an "
                                  "empty, text or truncated file); expected a .ckpt written by the imitation stage, "
                                  f"or a draft folder written by `{_SHARE}`")
    with torch.serialization.safe_globals(list(LIGHTNING_SAFE_GLOBALS)):
        try:
            needs = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except (RuntimeError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # ValueError: TorchScript
            raise _damaged(path, exc) from exc
        if needs and not trust:
            raise _unsafe(path, f"its pickle calls {', '.join(needs)}")
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust)
        except pickle.UnpicklingError as exc:
            if trust:
                raise _damaged(path, exc) from exc
            # what the static scan cannot see, e.g. a global the pickle builds while it loads
            detail = next((line.strip() for line in str(exc).splitlines() if "WeightsUnpickler" in line), str(exc))
            raise _unsafe(path, detail) from exc
        except (RuntimeError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise _damaged(path, exc) from exc


def _damaged(path: Path, exc: Exception) -> NotACheckpointError:
    return NotACheckpointError(f"{path} is not a checkpoint written by torch.save, or it is damaged "
                               f"({type(exc).__name__}); copy or write it again")


def _read_checkpoint(path: Path, trust: bool = False) -> dict[str, Any]:
    """The parts of an imitation-stage checkpoint a draft needs: spec, weights, n and the backbone's identity."""
    ckpt = load_checkpoint(path, trust)
    saved = ckpt.get("backbone") if isinstance(ckpt, dict) else None
    if saved is None or "hyper_parameters" not in ckpt:
        raise NotACheckpointError(f"{path} is not an imitation-stage checkpoint (no 'backbone' entry); expected a "
                                  f".ckpt written by the imitation stage, or a draft folder written by `{_SHARE}`")
    weights = {k[len(_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_PREFIX)}
    return {"imitation": ckpt["hyper_parameters"].get("imitation"), "weights": weights, "n": saved["n"],
            "backbone": {"path": saved["path"], "fingerprint": saved["fingerprint"]}}


def _read_folder(path: Path) -> dict[str, Any]:
    config_path, weights_path = path / CONFIG, path / WEIGHTS
    for required in (config_path, weights_path):
        if not required.is_file():
            raise FileNotFoundError(f"draft folder {path} has no {required.name}; write it with "
                                    "`python -m lightning_ssd export-draft CKPT OUTDIR`")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotACheckpointError(f"{config_path} is not valid JSON ({exc}); export the draft again") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise NotACheckpointError(f"{config_path} is not a lightning_ssd draft config (no \"format\": "
                                  f"\"{FORMAT}\"); export the draft again")
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError) as exc:
        raise NotACheckpointError(f"{weights_path} is not a readable safetensors file ({exc}); the file is "
                                  "probably truncated: export the draft again") from exc
    return {**config, "weights": weights}


def _read(path: str | Path, trust: bool = False) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        return path, _read_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"draft {path} not found (expected a .ckpt from the imitation stage or a draft "
                                "folder written by export-draft)")
    return path, _read_checkpoint(path, trust)


def _network(draft: dict[str, Any], hidden_size: int, source: Path) -> nn.Module:
    net = _build(draft["imitation"], hidden_size)
    try:
        net.load_state_dict(draft["weights"])
    except RuntimeError as exc:
        raise BackboneMismatchError(f"the weights in {source} do not fit its imitation network: {exc}") from exc
    return net.eval()


def load_draft_spec(path: str | Path, vlm: SplitVLM, draft: int | str = 4, confidence_threshold: float | None = None,
                    prefix: str = "", backbone: str = "the backbone", source: str = "draft") -> DraftSpec:
    """The draft of an imitation-stage checkpoint or a draft folder, checked against `vlm`: the n and the imitation
    network the file holds, with d and the confidence threshold as given (they are decoding settings, not the
    draft's). `prefix` names the settings in errors as the user gave them (see `DraftSpec`).

    `backbone` is the name or folder `vlm` was loaded from, and `source` the setting that gave `path` (`draft-head`
    with prefix "--" reads `--draft-head`), so that a mismatch speaks of what the user typed.

    Raises:
        FileNotFoundError: no such checkpoint file or folder, or a draft folder without its files.
        NotACheckpointError: the path holds no draft (a text, empty or truncated file, a checkpoint of another
            kind, a draft folder with a damaged file).
        UnsafeCheckpointError: the checkpoint needs more than weights-only loading allows (it could run code).
        BackboneMismatchError: the draft was trained on another backbone (family, sizes or weights differ).
    """
    where, saved = _read(path)
    trained_on = saved["backbone"]
    check_fingerprint(trained_on["fingerprint"], backbone_fingerprint(vlm), trained_on["path"], backbone,
                      f"{prefix}{source} {path}", f"{prefix}backbone")
    imitation = _network(saved, vlm.decoder.hidden_size, where)
    return DraftSpec(saved["n"], imitation, draft, confidence_threshold, prefix).check(vlm.decoder)


def load_imitation_network(path: str | Path, vlm: SplitVLM) -> nn.Module:
    """The trained imitation network of an imitation-stage checkpoint or a draft folder, checked against `vlm`:
    `load_draft_spec(path, vlm).imitation`, raising as `load_draft_spec` does. Its exit layer n is in the spec."""
    return load_draft_spec(path, vlm).imitation


def _write_folder(out_dir: str | Path, imitation: dict | None, n: int, backbone: dict[str, Any],
                  weights: dict[str, torch.Tensor]) -> Path:
    if imitation is not None and not isinstance(imitation, dict):
        raise ValueError(f"the imitation network was configured as a Python object ({imitation!r}), which a "
                         "config.json cannot hold; configure it by class_path and init_args to save it")
    config = {"format": FORMAT, "version": 1, "imitation": imitation, "n": n, "backbone": backbone}
    with staged_folder(out_dir) as staging:
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, staging / WEIGHTS)
    return Path(out_dir)


def save_draft(imitation: nn.Module, n: int, vlm: SplitVLM, backbone: str, out_dir: str | Path) -> Path:
    """Writes a draft folder for an imitation network (an `ImitationNetwork` or any class built as
    `cls(hidden_size, **init_args)` with its init arguments in `imitation.init_args`) trained at layer n of `vlm`,
    whose path or preset name is `backbone`."""
    init_args = getattr(imitation, "init_args", None)
    if init_args is None:
        from lightning_ssd.models.components.imitation import ImitationNetwork

        if type(imitation) is not ImitationNetwork:
            raise ValueError(f"{type(imitation).__name__} does not record its init_args; it cannot be saved")
        init_args = imitation.config()
    spec = {"class_path": f"{type(imitation).__module__}.{type(imitation).__qualname__}", "init_args": init_args}
    return _write_folder(out_dir, spec, n, {"path": backbone, "fingerprint": backbone_fingerprint(vlm)},
                         imitation.state_dict())


def export_draft(checkpoint: str | Path, out_dir: str | Path, trust: bool = False) -> Path:
    """Writes the draft of an imitation-stage checkpoint as a draft folder (atomically: all of it or nothing).

    `trust` reads a checkpoint that needs more than weights-only loading (see `load_checkpoint`): only for one's own
    files; the folder written is then safe to share."""
    source, draft = _read(checkpoint, trust)
    hidden_size = draft["backbone"]["fingerprint"]["hidden_size"]
    if draft["imitation"] is None or isinstance(draft["imitation"], dict):
        _network(draft, hidden_size, source)  # the weights must load before anything is written
    return _write_folder(out_dir, draft["imitation"], draft["n"], draft["backbone"], draft["weights"])
