"""SSD greedy output must be token-identical to transformers' generate(do_sample=False)."""

import pytest
import torch

from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import TINY, chaotic_, make_inputs, make_redundant_, reference_generate, tiny_vlm

MAX_NEW = 16
LENGTHS = [3, 8]  # prompts of different lengths in one left-padded batch


@pytest.fixture(scope="module", params=TINY)
def setup(request):
    vlm = chaotic_(tiny_vlm(request.param))
    batch = make_inputs(request.param, LENGTHS)
    return vlm, batch, reference_generate(vlm, batch, MAX_NEW)


def _random_imitation(vlm, attention=False):
    torch.manual_seed(1)
    return ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=attention).eval()


def test_reference_output_is_not_degenerate(setup):
    _, _, ref = setup
    assert all(len(set(row.tolist())) >= 4 for row in ref), ref  # a repeated token would make acceptance trivial


def test_plain_greedy_matches_generate(setup):
    vlm, batch, ref = setup
    out = generate(vlm, GreedyDecoder(vlm.decoder, vlm.eos_token_id), **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)


@pytest.mark.parametrize("draft", [1, 4, "dynamic"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("imitation", ["none", "random", "random-attention"])
def test_ssd_matches_generate(setup, draft, where, imitation):
    vlm, batch, ref = setup
    L = vlm.decoder.num_layers
    n = {"first": 1, "middle": L // 2, "last": L - 1}[where]
    net = None if imitation == "none" else _random_imitation(vlm, attention=imitation.endswith("attention"))
    decoder = SelfSpeculativeDecoder(vlm.decoder, n, net, draft, vlm.eos_token_id)
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert out.drafted > 0 and out.deep_passes < out.num_tokens


class _RecordingDecoder(SelfSpeculativeDecoder):
    """Records the top-1 probability of every draft step."""

    def _draft_token(self, logits):
        self.seen.append(float(torch.softmax(logits[0, -1].float(), -1).max()))
        return super()._draft_token(logits)


@pytest.mark.parametrize("imitation", ["none", "random-attention"])
def test_confidence_threshold_stops_drafts_early_and_keeps_the_output(setup, imitation):
    vlm, batch, ref = setup
    n = vlm.decoder.num_layers // 2
    net = None if imitation == "none" else _random_imitation(vlm, attention=True)
    probe = _RecordingDecoder(vlm.decoder, n, net, 4, vlm.eos_token_id, confidence_threshold=0.0)
    probe.seen = []
    always = generate(vlm, probe, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(always.padded(vlm.pad_token_id), ref)
    middle = sorted(probe.seen)[len(probe.seen) // 2]  # about half of the draft steps fall below it
    for threshold in (middle, 1.0):
        decoder = SelfSpeculativeDecoder(vlm.decoder, n, net, 4, vlm.eos_token_id, confidence_threshold=threshold)
        out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
        assert torch.equal(out.padded(vlm.pad_token_id), ref)
        assert 0 < always.drafted - out.drafted
    if max(probe.seen) < 1.0:  # threshold 1: nothing is drafted, every token comes from its own verification pass
        assert out.drafted == 0 and out.deep_passes == out.num_tokens - len(out.sequences)


@pytest.mark.parametrize("draft", [3, "dynamic"])
def test_ssd_stops_at_eos_inside_a_draft(setup, draft):
    vlm, batch, ref = setup
    # An EOS the reference emits mid-sequence: a token first seen at a position in [3, MAX_NEW - 2) of some row.
    rows = ref.tolist()
    row_idx, eos = next(
        (r, t) for r, row in enumerate(rows) for i, t in enumerate(row) if 3 <= i < MAX_NEW - 2 and t not in row[:i]
    )
    expected = reference_generate(vlm, batch, MAX_NEW, eos_token_id=eos)
    decoder = SelfSpeculativeDecoder(vlm.decoder, vlm.decoder.num_layers // 2, None, draft, [eos])
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert out.tokens[row_idx][-1] == eos and len(out.tokens[row_idx]) < MAX_NEW
    assert torch.equal(out.padded(vlm.pad_token_id), expected)


@pytest.mark.parametrize("max_new", [1, 2, 6, 7])
def test_ssd_stops_at_max_new_tokens_inside_a_draft(setup, max_new):
    vlm, batch, ref = setup
    decoder = SelfSpeculativeDecoder(vlm.decoder, 1, None, 4, vlm.eos_token_id)
    out = generate(vlm, decoder, **batch, max_new_tokens=max_new)
    assert torch.equal(out.padded(vlm.pad_token_id), ref[:, :max_new])


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("draft", [4, "dynamic"])
@pytest.mark.parametrize("with_imitation", [False, True])
def test_redundant_deep_layers_give_full_acceptance(name, draft, with_imitation):
    vlm = chaotic_(tiny_vlm(name))
    n = vlm.decoder.num_layers // 2
    make_redundant_(vlm, n)
    batch = make_inputs(name, LENGTHS)
    ref = reference_generate(vlm, batch, MAX_NEW)
    net = ImitationNetwork(vlm.decoder.hidden_size).eval() if with_imitation else None  # identity at init
    ssd = SelfSpeculativeDecoder(vlm.decoder, n, net, draft, vlm.eos_token_id)
    out = generate(vlm, ssd, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert out.acceptance_rate == 1.0
    assert all(c.accepted == c.drafted for c in out.cycles)
    # draft-only equals the full model here, too
    draft_only = generate(vlm, DraftOnlyDecoder(vlm.decoder, n, net, vlm.eos_token_id), **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(draft_only.padded(vlm.pad_token_id), ref)


def test_draft_only_differs_from_full_model_on_a_random_backbone(setup):
    vlm, batch, ref = setup
    out = generate(vlm, DraftOnlyDecoder(vlm.decoder, 1), **batch, max_new_tokens=MAX_NEW)
    assert out.deep_passes == 0
    assert not torch.equal(out.padded(vlm.pad_token_id), ref)
