"""`python -m lightning_ssd export-draft CKPT OUTDIR`: a trained draft as a shareable folder.

OUTDIR gets config.json (the imitation network's architecture, the exit layer n and the fingerprint of the backbone
it was trained on) and model.safetensors (its weights). Every command that takes an imitation checkpoint
(`bench --imitation`, `generate --draft-head`) takes the folder too, and refuses it for another backbone.

A checkpoint is read weights-only, as every command reads one: a file whose pickle needs more (it could run code)
is refused. `--trust` reads such a file anyway; give it only for a checkpoint you wrote yourself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_ssd.errors import ToolParser, UsageError
from lightning_ssd.threads import add_threads_argument, set_threads
from lightning_ssd.tools import checks


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd export-draft", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .ckpt written by the imitation stage")
    p.add_argument("out_dir", help="folder to write (replaced whole if it exists)")
    p.add_argument("--trust", action="store_true",
                   help="read a checkpoint that needs more than weights-only loading (it can run code: only for "
                        "your own files)")
    add_threads_argument(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    checks.draft_source(args.checkpoint, "checkpoint")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise UsageError(f"out_dir {args.out_dir} is a file; give a folder to write the draft into")
    set_threads(args.threads)
    from lightning_ssd.models.checkpoint import export_draft

    out = export_draft(args.checkpoint, args.out_dir, trust=args.trust)
    print(f"wrote {out}/config.json and {out}/model.safetensors")
