"""A backbone's fingerprint: enough to tell that a checkpoint was trained against a different backbone.

Shapes (family, depth, width, vocabulary) catch most mix-ups; a hash of a few weight slices (token embeddings,
the last layer's output projections) catches a different fine-tune or a preset built from another seed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.errors import UserError

_SLICE = 64  # rows of each hashed matrix: enough to differ between trainings, cheap to read


class BackboneMismatchError(UserError, ValueError):
    """A checkpoint's trainable weights belong to another backbone than the one configured."""


def _weight_digest(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach()[:_SLICE].to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def backbone_fingerprint(vlm: SplitVLM) -> dict[str, Any]:
    """Family, sizes and a weight digest of `vlm` (JSON-serialisable)."""
    dec = vlm.decoder
    embeddings = dec.embed_tokens(torch.arange(min(_SLICE, dec.vocab_size), device=_device(vlm)))
    last = [linear.weight for linear in dec.output_projections(dec.num_layers - 1)]
    return {
        "family": vlm.family,
        "num_layers": dec.num_layers,
        "hidden_size": dec.hidden_size,
        "vocab_size": dec.vocab_size,
        "weights": _weight_digest([embeddings, *last]),
    }


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], saved_path: str, current_path: str,
                      checkpoint: str = "this checkpoint", setting: str = "model.init_args.backbone") -> None:
    """Raises `BackboneMismatchError` naming what differs between the checkpoint's backbone and the configured one.

    `checkpoint` names the checkpoint and `setting` the flag or config key that chose the backbone, as the user
    typed them (`--draft-head d`, `--backbone`)."""
    diff = [f"{k}: checkpoint {saved.get(k)!r} vs configured {current.get(k)!r}"
            for k in current if saved.get(k) != current.get(k)]
    if diff:
        raise BackboneMismatchError(
            f"{checkpoint} was trained on backbone {saved_path!r}, which differs from {setting} {current_path!r} "
            f"({'; '.join(diff)}). Set {setting} to the backbone it was trained with, or train a new one for this "
            "backbone"
        )


def _device(vlm: SplitVLM) -> torch.device:
    return next(vlm.parameters()).device
