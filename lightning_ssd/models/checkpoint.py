"""Reading an imitation-stage checkpoint outside Lightning: the imitation network alone, for decoding."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.models.components.fingerprint import BackboneMismatchError, backbone_fingerprint, check_fingerprint

_PREFIX = "imitation_net."


def _build(spec: dict | None, hidden_size: int) -> nn.Module:
    if spec is None:
        from lightning_ssd.models.components.imitation import ImitationNetwork

        return ImitationNetwork(hidden_size)
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(hidden_size, **spec.get("init_args", {}))


def load_imitation_network(path: str | Path, vlm: SplitVLM) -> nn.Module:
    """The trained imitation network of an imitation-stage checkpoint, checked against `vlm`.

    Raises:
        FileNotFoundError: no such checkpoint file.
        BackboneMismatchError: the file is not an imitation-stage checkpoint (unreadable, truncated, or of another
            kind), or it was trained on another backbone (family, sizes or weights differ).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"imitation checkpoint {path} not found (expected a .ckpt from the imitation stage)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip, EOF or runtime errors for a file that is no checkpoint
        raise BackboneMismatchError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); expected a .ckpt written by the "
            "imitation stage"
        ) from exc
    saved = ckpt.get("backbone") if isinstance(ckpt, dict) else None
    if saved is None or "hyper_parameters" not in ckpt:
        raise BackboneMismatchError(f"{path} is not an imitation-stage checkpoint (no 'backbone' entry)")
    check_fingerprint(saved["fingerprint"], backbone_fingerprint(vlm), saved["path"], "the benchmarked backbone")
    net = _build(ckpt["hyper_parameters"].get("imitation"), vlm.decoder.hidden_size)
    weights = {k[len(_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_PREFIX)}
    net.load_state_dict(weights)
    net.n = saved["n"]
    return net.eval()
