"""`python -m lightning_ssd export-draft CKPT OUTDIR`: a trained draft as a shareable folder.

OUTDIR gets config.json (the imitation network's architecture, the exit layer n and the fingerprint of the backbone
it was trained on) and model.safetensors (its weights). Every command that takes an imitation checkpoint
(`bench --imitation`, `generate --draft-head`) takes the folder too, and refuses it for another backbone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_ssd.errors import ToolParser, UsageError
from lightning_ssd.tools import checks


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd export-draft", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .ckpt written by the imitation stage")
    p.add_argument("out_dir", help="folder to write (replaced whole if it exists)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    checks.draft_source(args.checkpoint, "checkpoint")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise UsageError(f"out_dir {args.out_dir} is a file; give a folder to write the draft into")
    from lightning_ssd.models.checkpoint import export_draft

    out = export_draft(args.checkpoint, args.out_dir)
    print(f"wrote {out}/config.json and {out}/model.safetensors")
