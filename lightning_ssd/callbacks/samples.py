"""TensorBoard text: decoded samples marked by who produced each token (the paper's fig. 4).

Accepted draft tokens are plain, a rejected draft token is struck through, the full model's correction after a
rejection is **bold**, and its own tokens where no draft was rejected (the first token, the bonus token after a
fully accepted draft) are *italic*.

TensorBoard's Markdown has no strikethrough (`~~x~~` shows the tildes) and its sanitizer drops `<del>` and `<s>`,
so a struck token is written with a combining long stroke (U+0336) after each character. A backslash before `<`
stays visible there, so `<`, `>` and `&` are written as HTML entities; the other Markdown characters are
backslash-escaped. The engine's `Cycle` records each cycle's rejected draft token, so the text is rebuilt from the
SSD run alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch.utils.tensorboard import SummaryWriter

from lightning_ssd.callbacks.tensorboard import EvalSummaryWriter
from lightning_ssd.decoding.result import SequenceResult

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: f"\\{c}" for c in "\\`*_[]#|"}}
_MARKDOWN = str.maketrans(_ESCAPES)
STROKE = "\u0336"
LEGEND = ("plain: accepted draft token · " + "".join(f"{c}{STROKE}" for c in "struck") + ": rejected draft token · "
          "**bold**: the full model's correction · *italic*: the full model's own token where no draft was rejected "
          "(the first token, and the bonus token after a fully accepted draft)")


def escape(text: str) -> str:
    """Text shown literally by TensorBoard's Markdown."""
    return text.translate(_MARKDOWN)


def _struck(text: str) -> str:
    return "".join(f"{c}{STROKE}" if not c.isspace() else c for c in text)


def render_cycles(ssd: SequenceResult, piece: Callable[[int], str]) -> str:
    """Markdown of an SSD output: plain accepted drafts, struck rejected draft, **correction**, *own token*.

    Args:
        ssd: the SSD run: its tokens, and cycles that say what each cycle accepted and rejected.
        piece: text of one token, with its leading space if it has one.
    """
    def word(token: int, mark: str = "", strike: bool = False) -> str:
        text = piece(token)
        core = text.strip()
        core = escape(_struck(core) if strike else core)
        return text[: len(text) - len(text.lstrip())] + (f"{mark}{core}{mark}" if core else "")

    tokens = ssd.tokens
    out = [word(tokens[0], "*")]  # the prefill's token: the full model's own, no draft before it
    t = 1
    for c in ssd.cycles:
        emitted = tokens[t : t + c.emitted]
        kept = min(c.accepted, len(emitted))
        out += [word(tok) for tok in emitted[:kept]]
        if len(emitted) > kept:
            if c.rejected is not None:
                out.append(word(c.rejected, strike=True))
            out.append(word(emitted[kept], "**" if c.accepted < c.drafted else "*"))
        t += c.emitted
    return "".join(out).strip()


class DraftSamples(EvalSummaryWriter):
    """Adds `<stage>/samples`: decoded validation/test samples marked by who produced each token, on rank zero.

    Args:
        max_samples: samples shown per epoch (the module keeps `num_samples` of them).
    """

    def __init__(self, max_samples: int = 4) -> None:
        self.max_samples = max_samples

    def wants(self, pl_module: LightningModule, summary: Any) -> bool:
        return bool(summary.samples) and pl_module.n is not None

    def write(self, writer: SummaryWriter, trainer: Trainer, pl_module: LightningModule, summary: Any,
              stage: str) -> None:
        tokenizer = pl_module.tokenizer
        blocks = [LEGEND]
        for sample in summary.samples[: self.max_samples]:
            tokens = sample.ssd.tokens
            text = render_cycles(sample.ssd, lambda t: tokenizer.decode([t]))
            refs = " | ".join(escape(r) for r in sample.references[:2])
            blocks.append(f"**sample {sample.sample_id}**, {len(sample.ssd.cycles)} cycles for {len(tokens)} "
                          f"tokens\n\n{text}\n\nreference: {refs}")
        writer.add_text(f"{stage}/samples", "\n\n---\n\n".join(blocks), trainer.global_step)
