"""SSD greedy output must be token-identical to transformers' generate(do_sample=False) on the same padded batch.

Every batch decodes three prompts of different lengths at once (left padding), so rows accept different numbers of
drafts per cycle and finish at different steps; the tiny models' top-2 logit gaps are checked to clear the ~1e-4
that padding moves fp32 logits by, so that a token identity failure is the engine's and not a near-tie.
"""

import pytest
import torch

from lightning_ssd.decoding.acceptance import GreedyAcceptance
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import TINY, chaotic_, make_inputs, make_redundant_, reference_generate, tiny_vlm

MAX_NEW = 16
# prompts of different lengths in one left-padded batch, picked so that no reference row repeats one token
LENGTHS = {"tiny-blip2-opt": [3, 8, 5], "tiny-blip2-t5": [3, 8, 4], "tiny-llava": [3, 8, 5]}


@pytest.fixture(scope="module", params=TINY)
def setup(request):
    vlm = chaotic_(tiny_vlm(request.param))
    batch = make_inputs(request.param, LENGTHS[request.param])
    return vlm, batch, reference_generate(vlm, batch, MAX_NEW)


def _random_imitation(vlm, attention=False):
    torch.manual_seed(1)
    return ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=attention).eval()


def test_reference_output_is_not_degenerate(setup):
    _, _, ref = setup
    assert all(len(set(row.tolist())) >= 4 for row in ref), ref  # a repeated token would make acceptance trivial


def test_reference_top2_gaps_clear_the_padding_noise(setup):
    vlm, batch, ref = setup
    with torch.no_grad():
        out = vlm.model.generate(**batch, do_sample=False, max_new_tokens=MAX_NEW, output_scores=True,
                                 return_dict_in_generate=True)
    scores = torch.stack(out.scores, 1)  # (B, T, V)
    top2 = scores.topk(2, -1).values
    gaps = (top2[..., 0] - top2[..., 1])[ref != vlm.pad_token_id]
    assert gaps.min() > 1e-3, gaps.min()


def test_batched_rows_equal_rows_decoded_alone_where_transformers_agrees(setup):
    vlm, batch, ref = setup
    spec = DraftSpec(vlm.decoder.num_layers // 2, _random_imitation(vlm, True), 4)
    decoder = SelfSpeculativeDecoder(vlm.decoder, spec, vlm.eos_token_id)
    together = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW).tokens
    compared = 0
    for row in range(len(ref)):
        keep = batch["attention_mask"][row].bool()
        alone = {"pixel_values": batch["pixel_values"][row : row + 1], "input_ids": batch["input_ids"][row : row + 1,
                 keep], "attention_mask": batch["attention_mask"][row : row + 1, keep]}
        hf_alone = reference_generate(vlm, alone, MAX_NEW)[0].tolist()
        if hf_alone == ref[row, : len(hf_alone)].tolist():
            assert generate(vlm, decoder, **alone, max_new_tokens=MAX_NEW).tokens[0] == together[row]
            compared += 1
    assert compared == len(ref)


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
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, net, draft), vlm.eos_token_id)
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert out.drafted > 0 and out.deep_passes < out.num_tokens


class _RecordingRule(GreedyAcceptance):
    """Records the top-1 probability of every row at every draft step."""

    def __init__(self):
        self.seen = []

    def confidence(self, logits, q):
        values = super().confidence(logits, q)
        self.seen += values.tolist()
        return values


def _decode(vlm, decoder, batch, rule, max_new=MAX_NEW):
    prompt = vlm.encode(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    return GenerationResult(decoder.decode(prompt, max_new, rule))


@pytest.mark.parametrize("imitation", ["none", "random-attention"])
def test_confidence_threshold_stops_drafts_early_and_keeps_the_output(setup, imitation):
    vlm, batch, ref = setup
    n = vlm.decoder.num_layers // 2
    net = None if imitation == "none" else _random_imitation(vlm, attention=True)
    probe = _RecordingRule()
    always = _decode(vlm, SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, net, 4, 0.0), vlm.eos_token_id),
                     batch, probe)
    assert torch.equal(always.padded(vlm.pad_token_id), ref)
    middle = sorted(probe.seen)[len(probe.seen) // 2]  # about half of the draft steps fall below it
    for threshold in (middle, 1.0):
        decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, net, 4, threshold), vlm.eos_token_id)
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
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(vlm.decoder.num_layers // 2, None, draft), [eos])
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert out.tokens[row_idx][-1] == eos and len(out.tokens[row_idx]) < MAX_NEW
    assert torch.equal(out.padded(vlm.pad_token_id), expected)


@pytest.mark.parametrize("max_new", [1, 2, 6, 7])
def test_ssd_stops_at_max_new_tokens_inside_a_draft(setup, max_new):
    vlm, batch, ref = setup
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(1), vlm.eos_token_id)
    out = generate(vlm, decoder, **batch, max_new_tokens=max_new)
    assert torch.equal(out.padded(vlm.pad_token_id), ref[:, :max_new])


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("draft", [4, "dynamic"])
@pytest.mark.parametrize("with_imitation", [False, True])
def test_redundant_deep_layers_give_full_acceptance(name, draft, with_imitation):
    vlm = chaotic_(tiny_vlm(name))
    n = vlm.decoder.num_layers // 2
    make_redundant_(vlm, n)
    batch = make_inputs(name, LENGTHS[name])
    ref = reference_generate(vlm, batch, MAX_NEW)
    net = ImitationNetwork(vlm.decoder.hidden_size).eval() if with_imitation else None  # identity at init
    ssd = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, net, draft), vlm.eos_token_id)
    out = generate(vlm, ssd, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert out.acceptance_rate == 1.0
    assert all(c.accepted == c.drafted for c in out.cycles)
    # draft-only equals the full model here, too
    draft_only = generate(vlm, DraftOnlyDecoder(vlm.decoder, DraftSpec(n, net), vlm.eos_token_id), **batch,
                          max_new_tokens=MAX_NEW)
    assert torch.equal(draft_only.padded(vlm.pad_token_id), ref)


def test_draft_only_differs_from_full_model_on_a_random_backbone(setup):
    vlm, batch, ref = setup
    out = generate(vlm, DraftOnlyDecoder(vlm.decoder, DraftSpec(1)), **batch, max_new_tokens=MAX_NEW)
    assert out.deep_passes == 0
    assert not torch.equal(out.padded(vlm.pad_token_id), ref)
