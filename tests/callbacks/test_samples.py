"""Sample texts: rejected drafts struck through, the full model's tokens in bold; the engine records the rejections."""

import pytest
import torch

from lightning_ssd.callbacks.samples import render_cycles
from lightning_ssd.decoding.engine import SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import Cycle, SequenceResult
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import TINY, chaotic_, make_inputs, tiny_vlm

WORDS = {0: " a", 1: " red", 2: " circle", 3: " square", 4: " on", 5: " blue", 6: " grass", 7: "</s>", 8: " *x*"}


def _cycle(drafted, accepted, emitted, rejected=None):
    return Cycle(drafted, accepted, emitted, 1, 0.0, 0.0, rejected)


def test_render_marks_who_produced_each_token():
    tokens = [0, 1, 2, 4, 0, 5, 6]
    # cycle 1: "red" accepted, draft "square" rejected, the full model says "circle"; cycle 2: "on a" accepted,
    # bonus "blue"; cycle 3: draft "a" rejected, the full model says "grass"
    cycles = (_cycle(3, 1, 2, 3), _cycle(2, 2, 3), _cycle(2, 0, 1, 0))
    ssd = SequenceResult(tuple(tokens), cycles, 0.0, 0.0)
    assert render_cycles(ssd, WORDS.__getitem__) == (
        "*a* red s\u0336q\u0336u\u0336a\u0336r\u0336e\u0336 **circle** on a *blue* a\u0336 **grass**"
    )


def test_render_keeps_truncated_cycles_plain_and_escapes_markdown():
    ssd = SequenceResult((0, 8, 7), (_cycle(4, 3, 2, 5),), 0.0, 0.0)  # EOS inside the accepted drafts
    assert render_cycles(ssd, WORDS.__getitem__) == "*a* \\*x\\*&lt;/s&gt;"


def test_tensorboard_renders_strokes_emphasis_and_end_tokens_without_stray_characters():
    from tensorboard.plugin_util import markdown_to_safe_html

    tokens = [0, 1, 2, 4, 0, 5, 7]
    cycles = (_cycle(3, 1, 2, 3), _cycle(2, 2, 3), _cycle(1, 0, 1, 8))
    html = markdown_to_safe_html(render_cycles(SequenceResult(tuple(tokens), cycles, 0.0, 0.0), WORDS.__getitem__))
    assert html == ("<p><em>a</em> red s\u0336q\u0336u\u0336a\u0336r\u0336e\u0336 <strong>circle</strong> on a "
                    "<em>blue</em> *\u0336x\u0336*\u0336<strong>&lt;/s&gt;</strong></p>")
    assert "~" not in html and "\\" not in html and "&lt;del" not in html


def _teacher_forced_drafts(vlm, n, imitation, prompt, tokens):
    """The draft model's argmax after each prefix tokens[:t] of one unpadded row, computed without a cache."""
    dec = vlm.decoder
    P = prompt.inputs_embeds.shape[1]
    ids = torch.tensor([list(tokens[:-1])])
    embeds = torch.cat([prompt.inputs_embeds, dec.embed_tokens(ids)], dim=1)
    positions = torch.arange(embeds.shape[1]).unsqueeze(0)
    x_n = dec.run_layers(dec.embed(embeds, positions), 0, n, None, positions, None, prompt.encoder)
    x_i = imitation(x_n) if imitation is not None else x_n
    return dec.head(x_i[:, P - 1 :]).argmax(-1)[0].tolist()


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("with_imitation", [False, True])
def test_recorded_rejections_are_the_draft_models_tokens(name, with_imitation):
    vlm = chaotic_(tiny_vlm(name))
    torch.manual_seed(1)
    imitation = ImitationNetwork(vlm.decoder.hidden_size, residual=False).eval() if with_imitation else None
    n = 2
    batch = make_inputs(name, [3, 6])
    result = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, imitation, 3), vlm.eos_token_id), **batch,
                      max_new_tokens=12)
    prompt = vlm.encode(**batch)
    rejections = 0
    with torch.no_grad():
        for i, seq in enumerate(result.sequences):
            drafts = _teacher_forced_drafts(vlm, n, imitation, prompt.select(i), list(seq.tokens))
            t = 1
            for c in seq.cycles:
                kept = min(c.accepted, c.emitted)
                assert drafts[t : t + kept] == list(seq.tokens[t : t + kept])  # accepted drafts are the output
                if c.accepted < c.drafted and c.emitted > kept:
                    assert c.rejected == drafts[t + kept] != seq.tokens[t + kept]
                    rejections += 1
                else:
                    assert c.rejected is None
                t += c.emitted
    assert rejections > 0
