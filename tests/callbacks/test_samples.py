"""Sample texts: rejected drafts struck through, the full model's tokens in bold; recovered drafts match the engine."""

import pytest
import torch

from lightning_ssd.callbacks.samples import draft_predictions, render_cycles
from lightning_ssd.decoding.engine import SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import Cycle, SequenceResult
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import TINY, chaotic_, make_inputs, tiny_vlm

WORDS = {0: " a", 1: " red", 2: " circle", 3: " square", 4: " on", 5: " blue", 6: " grass", 7: "</s>", 8: " *x*"}


def _cycle(drafted, accepted, emitted):
    return Cycle(drafted, accepted, emitted, 1, 0.0, 0.0)


def test_render_marks_who_produced_each_token():
    tokens = [0, 1, 2, 4, 0, 5, 6]
    cycles = (_cycle(3, 1, 2), _cycle(2, 2, 3), _cycle(2, 0, 1))
    # cycle 1: "red" accepted, draft "square" rejected, the full model says "circle"; cycle 2: "on a" accepted,
    # bonus "blue"; cycle 3: draft "a" rejected, the full model says "grass"
    drafts = [9, 1, 3, 4, 0, 9, 0]
    ssd = SequenceResult(tuple(tokens), cycles, 0.0, 0.0)
    text = render_cycles(tokens, ssd, drafts, WORDS.__getitem__)
    assert text == "**a** red ~~square~~ **circle** on a **blue** ~~a~~ **grass**"


def test_render_keeps_truncated_cycles_plain_and_escapes_markdown():
    tokens = [0, 8, 7]
    ssd = SequenceResult(tuple(tokens), (_cycle(4, 3, 2),), 0.0, 0.0)  # EOS inside the accepted drafts
    text = render_cycles(tokens, ssd, [9, 8, 7], WORDS.__getitem__)
    assert text == "**a** \\*x\\*\\</s\\>"


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("with_imitation", [False, True])
def test_recovered_drafts_agree_with_the_engine(name, with_imitation):
    vlm = chaotic_(tiny_vlm(name))
    torch.manual_seed(1)
    imitation = ImitationNetwork(vlm.decoder.hidden_size, residual=False).eval() if with_imitation else None
    n = 2
    batch = make_inputs(name, [3, 6])
    result = generate(vlm, SelfSpeculativeDecoder(vlm.decoder, n, imitation, 3, vlm.eos_token_id), **batch,
                      max_new_tokens=12)
    prompt = vlm.encode(**batch)
    rejections = 0
    for i, seq in enumerate(result.sequences):
        drafts = draft_predictions(vlm, n, imitation, prompt.select(i), list(seq.tokens))
        t = 1
        for c in seq.cycles:
            kept = min(c.accepted, c.emitted)
            assert drafts[t : t + kept] == list(seq.tokens[t : t + kept])  # accepted drafts are the output
            if c.accepted < c.drafted and c.emitted > kept:
                assert drafts[t + kept] != seq.tokens[t + kept]  # a rejected draft differs from the correction
                rejections += 1
            t += c.emitted
    assert rejections > 0  # the case that needs the recovered token occurred
