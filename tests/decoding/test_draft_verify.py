"""The Draft & Verify baseline is lossless: greedy tokens equal transformers' generate, samples follow its law.

Same models, batches and reference as test_lossless.py (three prompts of different lengths, left padded, whose
top-2 logit gaps that file checks), decoded with the full model minus a skip set as the draft; and, for sampling,
the chi-square test of test_sampling.py on a smaller batch (N = 5,000 rows, enough to catch a broken drafter).
"""

import dataclasses
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

from lightning_ssd.backbones.vlm import DecoderPrompt
from lightning_ssd.decoding.acceptance import GreedyAcceptance, acceptance_rule
from lightning_ssd.decoding.engine import SpeculativeDecoder
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold, SkipLayerDrafter
from lightning_ssd.decoding.spec import DraftSpec
from tests.decoding import test_qwen
from tests.decoding.test_sampling import ALPHA, CONFIG, _exact_joint
from tests.helpers import TINY, chaotic_, make_inputs, reference_generate, tiny_vlm

MAX_NEW = 16
LENGTHS = {"tiny-blip2-opt": [3, 8, 5], "tiny-blip2-t5": [3, 8, 4], "tiny-llava": [3, 8, 5]}  # as test_lossless
SAMPLES = 5_000


def _skip(name: str, L: int) -> tuple[int, ...]:
    """Named skip sets: none (the draft is the full model), the first layer (verification from layer 0), one late
    layer, two middle ones, two apart (the draft runs two separate ranges of kept layers), and a heavy one (every
    layer but the last)."""
    return {"none": (), "first": (0,), "late": (L - 1,), "middle": (1, L - 2), "apart": (0, L - 2),
            "heavy": tuple(range(L - 1))}[name]


def _draft_verify(vlm, skip, draft=4, threshold=None, adaptive=None, eos=None):
    eos = vlm.eos_token_id if eos is None else eos
    return build_decoder("draft_verify", vlm.decoder, eos, DraftSpec(draft=draft, confidence_threshold=threshold),
                         skip_layers=skip, adaptive_threshold=adaptive)


@pytest.fixture(scope="module", params=TINY)
def setup(request):
    vlm = chaotic_(tiny_vlm(request.param))
    batch = make_inputs(request.param, LENGTHS[request.param])
    return vlm, batch, reference_generate(vlm, batch, MAX_NEW)


@pytest.mark.parametrize("draft", [1, 4, "dynamic"])
@pytest.mark.parametrize("skip", ["none", "first", "late", "apart", "heavy"])
@pytest.mark.parametrize("threshold", [None, 0.5, "adaptive"])
def test_draft_verify_matches_generate(setup, draft, skip, threshold):
    vlm, batch, ref = setup
    adaptive = AdaptiveThreshold() if threshold == "adaptive" else None
    decoder = _draft_verify(vlm, _skip(skip, vlm.decoder.num_layers), draft, 0.5 if adaptive else threshold, adaptive)
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert out.drafted > 0
    if skip == "none":  # the draft is the full model: every draft is accepted
        assert out.acceptance_rate == 1.0 and all(c.accepted == c.drafted for c in out.cycles)
    if skip == "heavy":
        assert out.acceptance_rate < 1.0


def test_verification_starts_at_the_first_skipped_layer(setup):
    vlm, _, _ = setup
    L = vlm.decoder.num_layers
    names = ("none", "first", "late", "middle", "apart")
    layer = {skip: _draft_verify(vlm, _skip(skip, L)).drafter.layer for skip in names}
    assert layer == {"none": L - 1, "first": 0, "late": L - 1, "middle": 1, "apart": 0}


def test_threshold_one_drafts_one_token_per_cycle(setup):
    vlm, batch, ref = setup
    out = generate(vlm, _draft_verify(vlm, _skip("late", vlm.decoder.num_layers), 4, 1.0), **batch,
                   max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    # D&V keeps the first unconfident draft in the verified block, so threshold 1 still drafts one token a cycle
    # (none in a row's last cycle when one token is left to emit)
    assert all(c.drafted == 1 for s in out.sequences for c in s.cycles[:-1])
    assert max(c.drafted for c in out.cycles) == 1


def test_adaptive_threshold_rises_for_a_poor_draft_and_drafts_less(setup):
    vlm, batch, ref = setup
    skip = _skip("heavy", vlm.decoder.num_layers)
    fixed = generate(vlm, _draft_verify(vlm, skip, 4, 0.01), **batch, max_new_tokens=MAX_NEW)
    decoder = _draft_verify(vlm, skip, 4, 0.01, AdaptiveThreshold(target=0.9, step=0.5, beta1=0.0, beta2=0.0))
    adapted = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(adapted.padded(vlm.pad_token_id), ref)
    assert adapted.drafted < fixed.drafted
    assert bool((decoder.drafter.row_thresholds > 0.01).all())


def test_adaptive_threshold_falls_for_the_full_model_as_draft(setup):
    vlm, batch, ref = setup
    decoder = _draft_verify(vlm, (), 2, 0.9, AdaptiveThreshold(target=0.5, step=0.5, beta1=0.0, beta2=0.0))
    out = generate(vlm, decoder, **batch, max_new_tokens=MAX_NEW)
    assert torch.equal(out.padded(vlm.pad_token_id), ref)
    assert bool((decoder.drafter.row_thresholds < 0.9).any())  # rows whose drafts were cut by it before the cap


@pytest.mark.parametrize("draft", [3, "dynamic"])
@pytest.mark.parametrize("skip", ["none", "late"])
def test_draft_verify_stops_at_eos_inside_a_draft(setup, draft, skip):
    vlm, batch, ref = setup
    rows = ref.tolist()
    row_idx, eos = next(
        (r, t) for r, row in enumerate(rows) for i, t in enumerate(row) if 3 <= i < MAX_NEW - 2 and t not in row[:i]
    )
    expected = reference_generate(vlm, batch, MAX_NEW, eos_token_id=eos)
    out = generate(vlm, _draft_verify(vlm, _skip(skip, vlm.decoder.num_layers), draft, eos=[eos]), **batch,
                   max_new_tokens=MAX_NEW)
    assert out.tokens[row_idx][-1] == eos and len(out.tokens[row_idx]) < MAX_NEW
    assert torch.equal(out.padded(vlm.pad_token_id), expected)


@pytest.mark.parametrize("max_new", [1, 2, 6, 7])
@pytest.mark.parametrize("skip", ["none", "middle"])
def test_draft_verify_stops_at_max_new_tokens_inside_a_draft(setup, max_new, skip):
    vlm, batch, ref = setup
    out = generate(vlm, _draft_verify(vlm, _skip(skip, vlm.decoder.num_layers), 4), **batch, max_new_tokens=max_new)
    assert torch.equal(out.padded(vlm.pad_token_id), ref[:, :max_new])


# -- Qwen2.5-VL (M-RoPE, GQA) --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen():
    vlm, batch = test_qwen.tiny_qwen(), test_qwen.inputs()
    return vlm, batch, test_qwen.reference(vlm, batch)


@pytest.mark.parametrize("draft", [1, 4, "dynamic"])
@pytest.mark.parametrize("skip", ["none", "first", "middle", "heavy"])
def test_draft_verify_matches_generate_on_qwen(qwen, draft, skip):
    vlm, batch, ref = qwen
    decoder = _draft_verify(vlm, _skip(skip, vlm.decoder.num_layers), draft, 0.5, eos=[test_qwen.EOS])
    out = generate(vlm, decoder, **batch, max_new_tokens=test_qwen.MAX_NEW)
    assert torch.equal(out.padded(test_qwen.PAD), ref)


# -- speculative sampling ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampling():
    vlm = chaotic_(tiny_vlm("tiny-llava"), std=0.12)  # test_sampling's model and prompt
    one = make_inputs("tiny-llava", [4])
    encoded = vlm.encode(one["pixel_values"], one["input_ids"], one["attention_mask"])
    # every row holds the same prompt: encode it once and decode its copies as one batch
    prompt = DecoderPrompt(encoded.inputs_embeds.expand(SAMPLES, -1, -1), encoded.attention_mask.expand(SAMPLES, -1),
                           encoded.position_ids.expand(SAMPLES, -1))
    return vlm, prompt, _exact_joint(vlm, one)


class _UniformQ(SkipLayerDrafter):
    """A broken drafter: samples from its own distribution but reports a uniform q to the rule."""

    def propose(self, state, last, budget, rule):
        draft = super().propose(state, last, budget, rule)
        if draft.q is None:  # a cycle with nothing left to draft
            return draft
        return dataclasses.replace(draft, q=torch.full_like(draft.q, 1 / draft.q.shape[-1]))


def _sample(vlm, prompt, drafter_class, skip):
    decoder = SpeculativeDecoder(vlm.decoder, drafter_class(vlm.decoder, skip), 2)
    rule = acceptance_rule(CONFIG, torch.Generator().manual_seed(0))
    return GenerationResult(decoder.decode(prompt, 3, rule))


def _p_value(tokens, joint):
    """test_sampling's chi-square of the first three tokens against the exact joint law (cells of expected count
    < 5 pooled with the sequences the full model cannot produce)."""
    counts = Counter(tuple(row[:3]) for row in tokens)
    outside = sum(c for key, c in counts.items() if key not in joint)
    expected = {key: len(tokens) * p for key, p in joint.items()}
    big = [key for key, e in expected.items() if e >= 5]
    small = [key for key, e in expected.items() if e < 5]
    f_obs, f_exp = [counts[k] for k in big], [expected[k] for k in big]
    if small or outside:
        f_obs.append(sum(counts[k] for k in small) + outside)
        f_exp.append(max(sum(expected[k] for k in small), 1e-12))
    scale = sum(f_obs) / sum(f_exp)  # exact probabilities sum to 1 up to float error
    return chisquare(f_obs, [e * scale for e in f_exp]).pvalue, outside


@pytest.mark.parametrize(("skip", "low", "high"), [((0, 1, 2), 0.02, 0.2), ((3,), 0.3, 0.99)])
def test_draft_verify_sampling_matches_the_full_models_distribution(sampling, skip, low, high):
    vlm, prompt, joint = sampling
    out = _sample(vlm, prompt, SkipLayerDrafter, skip)
    p_value, outside = _p_value(out.tokens, joint)
    assert outside == 0
    assert p_value > ALPHA, p_value
    assert low < out.acceptance_rate < high, out.acceptance_rate  # rejections, and acceptances, both common


def test_a_drafter_that_misreports_q_is_caught(sampling):
    vlm, prompt, joint = sampling
    p_value, _ = _p_value(_sample(vlm, prompt, _UniformQ, (0, 1, 2)).tokens, joint)
    assert p_value < ALPHA, p_value


def test_greedy_drafts_carry_no_q(setup):
    vlm, batch, _ = setup
    drafter = _draft_verify(vlm, _skip("late", vlm.decoder.num_layers)).drafter
    seen = []

    class Probe(GreedyAcceptance):
        def judge(self, drafts, lengths, q, logits):
            seen.append(q)
            return super().judge(drafts, lengths, q, logits)

    prompt = vlm.encode(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    SpeculativeDecoder(vlm.decoder, drafter, 2, vlm.eos_token_id).decode(prompt, 4, Probe())
    assert seen and all(q is None for q in seen)


# -- settings at fault ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("skip", "match"), [((-1,), r"skip_layers holds \[-1\]"), ((0, 4), r"holds \[4\]"),
                                             ((1.0,), "integers"), ((0, 1, 2, 3), "skips all 4 layers")])
def test_bad_skip_sets_are_refused(setup, skip, match):
    vlm, _, _ = setup
    with pytest.raises(ValueError, match=match):
        _draft_verify(vlm, skip)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_outside_unit_interval_is_refused(setup, threshold):
    vlm, _, _ = setup
    with pytest.raises(ValueError, match="confidence_threshold must be in"):
        _draft_verify(vlm, (3,), threshold=threshold)


def test_adaptive_threshold_settings_are_checked(setup):
    vlm, _, _ = setup
    with pytest.raises(ValueError, match="starts from confidence_threshold"):
        _draft_verify(vlm, (3,), adaptive=AdaptiveThreshold())
    with pytest.raises(ValueError, match="target must be in"):
        AdaptiveThreshold(target=1.5)
    with pytest.raises(ValueError, match="step must be in"):
        AdaptiveThreshold(step=-0.01)


def test_draft_verify_mode_needs_a_skip_set(setup):
    vlm, _, _ = setup
    with pytest.raises(ValueError, match="set skip_layers"):
        build_decoder("draft_verify", vlm.decoder, vlm.eos_token_id)
