"""TensorBoard text: decoded samples with the draft's rejected tokens struck through and the full model's in bold.

Like the paper's fig. 4: accepted draft tokens are plain, a rejected draft token is ~~struck through~~ and the full
model's own token (its correction, or the bonus token after a fully accepted draft) is **bold**.

The engine's `Cycle` records how many drafts were accepted but not the rejected token itself. It is recovered by
running the draft model teacher-forced over the final output: every draft token at output step t was proposed from
exactly the final tokens before t (earlier tokens were accepted or corrected), so the draft's argmax there is the
token it proposed, up to floating-point ties between the cached and the batched computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from lightning_ssd.backbones.vlm import DecoderPrompt, SplitVLM
from lightning_ssd.callbacks.tensorboard import EvalSummaryWriter
from lightning_ssd.decoding.result import SequenceResult

_MARKDOWN = str.maketrans({c: f"\\{c}" for c in "\\`*_~[]<>#|"})


@torch.inference_mode()
def draft_predictions(
    vlm: SplitVLM, n: int, imitation: nn.Module | None, prompt: DecoderPrompt, tokens: Sequence[int]
) -> list[int]:
    """argmax of the draft model (layers [0, n) + imitation + head) after each prefix tokens[:t], t = 0..T-1."""
    dec = vlm.decoder
    P = prompt.inputs_embeds.shape[1]
    ids = torch.tensor([list(tokens[:-1])], dtype=torch.long, device=prompt.inputs_embeds.device)
    embeds = torch.cat([prompt.inputs_embeds, dec.embed_tokens(ids)], dim=1)  # (1, P + T - 1, D)
    positions = torch.arange(embeds.shape[1], device=embeds.device).unsqueeze(0)
    x_n = dec.run_layers(dec.embed(embeds, positions), 0, n, None, positions, None, prompt.encoder)
    x_i = imitation(x_n) if imitation is not None else x_n
    return dec.head(x_i[:, P - 1 :]).argmax(-1)[0].tolist()


def render_cycles(
    tokens: Sequence[int], ssd: SequenceResult, drafts: Sequence[int], piece: Callable[[int], str]
) -> str:
    """Markdown of an SSD output: plain accepted drafts, ~~rejected draft~~, **full model's token**.

    Args:
        tokens: the generated tokens (equal to `ssd.tokens`).
        ssd: the SSD run, whose cycles say how many drafts each cycle proposed and accepted.
        drafts: the draft model's prediction at each output step (see `draft_predictions`).
        piece: text of one token, with its leading space if it has one.
    """
    def word(token: int, mark: str = "") -> str:
        text = piece(token)
        core = text.strip().translate(_MARKDOWN)
        return text[: len(text) - len(text.lstrip())] + (f"{mark}{core}{mark}" if core else "")

    out = [word(tokens[0], "**")]  # the prefill's token comes from the full model
    t = 1
    for c in ssd.cycles:
        emitted = tokens[t : t + c.emitted]
        kept = min(c.accepted, len(emitted))
        out += [word(tok) for tok in emitted[:kept]]
        if len(emitted) > kept:
            if c.accepted < c.drafted:
                out.append(word(drafts[t + kept], "~~"))
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
            tokens = list(sample.ssd.tokens)
            drafts = draft_predictions(pl_module.vlm, pl_module.n, pl_module.imitation, sample.prompt, tokens)
            text = render_cycles(tokens, sample.ssd, drafts, lambda t: tokenizer.decode([t]))
            refs = " | ".join(r.translate(_MARKDOWN) for r in sample.references[:2])
            blocks.append(f"**sample {sample.sample_id}**, {len(sample.ssd.cycles)} cycles for {len(tokens)} "
                          f"tokens\n\n{text}\n\nreference: {refs}")
        writer.add_text(f"{stage}/samples", "\n\n---\n\n".join(blocks), trainer.global_step)
