"""TensorBoard text: decoded samples with the draft's rejected tokens struck through and the full model's in bold.

Like the paper's fig. 4: accepted draft tokens are plain, a rejected draft token is ~~struck through~~ and the full
model's own token (its correction, or the bonus token after a fully accepted draft) is **bold**.

The engine's `Cycle` records each cycle's rejected draft token, so the text is rebuilt from the SSD run alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch.utils.tensorboard import SummaryWriter

from lightning_ssd.callbacks.tensorboard import EvalSummaryWriter
from lightning_ssd.decoding.result import SequenceResult

_MARKDOWN = str.maketrans({c: f"\\{c}" for c in "\\`*_~[]<>#|"})


def render_cycles(ssd: SequenceResult, piece: Callable[[int], str]) -> str:
    """Markdown of an SSD output: plain accepted drafts, ~~rejected draft~~, **full model's token**.

    Args:
        ssd: the SSD run: its tokens, and cycles that say what each cycle accepted and rejected.
        piece: text of one token, with its leading space if it has one.
    """
    def word(token: int, mark: str = "") -> str:
        text = piece(token)
        core = text.strip().translate(_MARKDOWN)
        return text[: len(text) - len(text.lstrip())] + (f"{mark}{core}{mark}" if core else "")

    tokens = ssd.tokens
    out = [word(tokens[0], "**")]  # the prefill's token comes from the full model
    t = 1
    for c in ssd.cycles:
        emitted = tokens[t : t + c.emitted]
        kept = min(c.accepted, len(emitted))
        out += [word(tok) for tok in emitted[:kept]]
        if len(emitted) > kept:
            if c.rejected is not None:
                out.append(word(c.rejected, "~~"))
            out.append(word(emitted[kept], "**"))
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
        blocks = ["Plain: accepted draft token. ~~struck~~: rejected draft token. **bold**: the full model's token."]
        for sample in summary.samples[: self.max_samples]:
            tokens = sample.ssd.tokens
            text = render_cycles(sample.ssd, lambda t: tokenizer.decode([t]))
            refs = " | ".join(r.translate(_MARKDOWN) for r in sample.references[:2])
            blocks.append(f"**sample {sample.sample_id}**, {len(sample.ssd.cycles)} cycles for {len(tokens)} "
                          f"tokens\n\n{text}\n\nreference: {refs}")
        writer.add_text(f"{stage}/samples", "\n\n---\n\n".join(blocks), trainer.global_step)
