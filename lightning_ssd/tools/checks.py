"""Checks of the tools' flags, made before any model loads; each error names the flag as typed and what to do."""

from __future__ import annotations

import zipfile
from pathlib import Path

from lightning_ssd.errors import UsageError

DRAFT_FILES = ("config.json", "model.safetensors")  # a draft folder, as export-draft writes it
_WHERE_DRAFTS_COME_FROM = ("give the imitation stage's .ckpt (such as <root>/imitation/checkpoints/last.ckpt) or a "
                           "draft folder written by `python -m lightning_ssd export-draft`")


def backbone(value: str, flag: str = "--backbone") -> int:
    """Checks a backbone preset or folder without loading it; returns its decoder depth L."""
    from lightning_ssd.backbones import check_backbone

    return check_backbone(value, flag)


def draft_source(value: str, flag: str) -> None:
    """An imitation checkpoint (.ckpt) or a draft folder: present, and a complete file of the right kind."""
    path = Path(value)
    if path.is_dir():
        missing = [name for name in DRAFT_FILES if not (path / name).is_file()]
        if missing:
            raise UsageError(f"{flag} {value}: the draft folder has no {' or '.join(missing)}; export it again with "
                             "`python -m lightning_ssd export-draft CKPT OUTDIR`")
    elif not path.exists():
        raise UsageError(f"{flag} {value}: no such file or folder; {_WHERE_DRAFTS_COME_FROM}")
    elif not zipfile.is_zipfile(path):
        raise UsageError(f"{flag} {value} is not a checkpoint written by torch.save (no complete zip archive: the "
                         f"file is truncated or of another kind); {_WHERE_DRAFTS_COME_FROM}")


def draft_length(value: str, flag: str = "--draft", names: tuple[str, ...] = ("dynamic",)) -> int | str:
    """d as an integer >= 1, or one of `names` ('dynamic': paper eq. 5); read by the decoders' own parser of the
    setting."""
    from lightning_ssd.decoding.checks import parse_draft

    return parse_draft(value, flag, names)


def sampling(do_sample: bool, temperature: float, top_k: int, top_p: float) -> None:
    """Sampling flags that transformers' generate and the SSD engine can both honour."""
    if top_k < 0:
        raise UsageError(f"--top-k {top_k}: must be >= 0 (0 turns it off)")
    if not 0.0 < top_p <= 1.0:
        raise UsageError(f"--top-p {top_p:g}: must be in (0, 1] (1 turns it off)")
    if do_sample and temperature <= 0:
        raise UsageError(f"--temperature {temperature:g} with --do-sample: the temperature must be > 0; leave out "
                         "--do-sample for greedy decoding")


def output_file(value: str, flag: str = "--output") -> None:
    """A file that can be written: not a folder, and not under a file."""
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{flag} {value} is a folder; give a file name inside it")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{flag} {value}: {parent} is a file, not a folder")


def device(value: str, flag: str = "--device") -> None:
    """A torch device that exists on this machine."""
    if value == "cpu":
        return
    import torch

    try:
        dev = torch.device(value)
    except RuntimeError:
        raise UsageError(f"{flag} {value!r} is not a device; use cpu, cuda or cuda:<index>") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {value}: no CUDA device is visible on this machine; use --device cpu")
