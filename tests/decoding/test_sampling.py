"""Speculative sampling is lossless in distribution: SSD's first sampled tokens follow the full model's exact law.

N = 20,000 rows of one prompt are decoded as one batch with max_new_tokens = 3 and d = 2: the first token comes from
the prefill, the second and third from one draft-verify cycle, so accepted drafts, resampled corrections and bonus
tokens all occur. The empirical joint distribution of the three tokens is compared with the exact one, computed
from transformers' own forward of every prefix with the same logits warpers, by a chi-square test at
alpha = 1e-3 (cells of expected count < 5 pooled). The draws are seeded, so a run is reproducible; over seeds the
test would raise a false alarm once in a thousand runs. A rule that accepts every draft must be caught by the same
test, which shows that it can fail.
"""


import pytest
import torch
from scipy.stats import chisquare
from transformers import GenerationConfig

from lightning_ssd.decoding.acceptance import SpeculativeSampling, logits_warpers
from lightning_ssd.decoding.engine import GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import chaotic_, make_inputs, tiny_vlm

N = 20_000
ALPHA = 1e-3
CONFIG = GenerationConfig(do_sample=True, temperature=0.8, top_k=5, top_p=0.97)


@pytest.fixture(scope="module")
def setup():
    vlm = chaotic_(tiny_vlm("tiny-llava"), std=0.12)
    one = make_inputs("tiny-llava", [4])
    batch = {k: v.expand(N, *v.shape[1:]).contiguous() for k, v in one.items()}
    return vlm, one, batch, _exact_joint(vlm, one)


@torch.no_grad()
def _probs(vlm, one, prefixes):
    """p after the warpers of the next token after each prefix of new tokens, by transformers' own forward."""
    k = len(prefixes)
    ids = torch.cat([one["input_ids"].expand(k, -1), torch.tensor(prefixes, dtype=torch.long).view(k, -1)], 1)
    logits = vlm.model(pixel_values=one["pixel_values"].expand(k, -1, -1, -1), input_ids=ids).logits[:, -1]
    return torch.softmax(logits_warpers(CONFIG)(None, logits), -1)


def _exact_joint(vlm, one):
    """{(t1, t2, t3): probability} over every triple with non-zero probability."""
    p1 = _probs(vlm, one, [[]])[0]
    firsts = p1.nonzero().flatten().tolist()
    p2 = _probs(vlm, one, [[t] for t in firsts])
    pairs = [(a, b) for i, a in enumerate(firsts) for b in p2[i].nonzero().flatten().tolist()]
    p3 = _probs(vlm, one, [list(pair) for pair in pairs])
    joint = {}
    for j, (a, b) in enumerate(pairs):
        for c in p3[j].nonzero().flatten().tolist():
            joint[(a, b, c)] = float(p1[a] * p2[firsts.index(a), b] * p3[j, c])
    return joint


def _p_value(tokens, joint):
    cells = sorted(joint, key=joint.get, reverse=True)
    counts = dict.fromkeys(cells, 0)
    outside = 0
    for row in tokens:
        key = tuple(row[:3])
        if key in counts:
            counts[key] += 1
        else:
            outside += 1  # a sequence the full model cannot produce
    expected = [N * joint[c] for c in cells]
    observed = [counts[c] for c in cells]
    big = [i for i, e in enumerate(expected) if e >= 5]
    small = [i for i, e in enumerate(expected) if e < 5]
    f_obs, f_exp = [observed[i] for i in big], [expected[i] for i in big]
    if small or outside:
        f_obs.append(sum(observed[i] for i in small) + outside)
        f_exp.append(max(sum(expected[i] for i in small), 1e-12))
    scale = sum(f_obs) / sum(f_exp)  # exact probabilities sum to 1 up to float error
    return chisquare(f_obs, [e * scale for e in f_exp]).pvalue, outside


def _draft(vlm, quality):
    L = vlm.decoder.num_layers
    if quality == "poor":
        torch.manual_seed(3)
        return 1, ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=True).eval()
    return L - 1, None


class _AlwaysAccept(SpeculativeSampling):
    """A broken rule: keeps every draft whatever p says."""

    def accepts(self, u, p_x, q_x):
        return torch.ones_like(p_x, dtype=torch.bool)


def _decode(vlm, decoder, batch, rule):
    prompt = vlm.encode(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    return GenerationResult(decoder.decode(prompt, 3, rule))


def test_exact_distribution_is_a_distribution(setup):
    _, _, _, joint = setup
    assert sum(joint.values()) == pytest.approx(1.0, abs=1e-4)
    assert 20 <= len(joint) <= 125  # top_k = 5 bounds it; chaotic logits keep several tokens per step


@pytest.mark.parametrize("quality", ["poor", "good"])
def test_ssd_sampling_matches_the_full_models_distribution(setup, quality):
    vlm, _, batch, joint = setup
    n, imitation = _draft(vlm, quality)
    decoder = SelfSpeculativeDecoder(vlm.decoder, n, imitation, 2, eos_token_id=())
    generator = torch.Generator().manual_seed(0)
    out = generate(vlm, decoder, **batch, max_new_tokens=3, generation_config=CONFIG, generator=generator)
    p_value, outside = _p_value(out.tokens, joint)
    assert outside == 0
    assert p_value > ALPHA, p_value
    # rejections (with resampling) dominate for the poor draft (alpha ~0.07), acceptances are common for the good
    # one (alpha ~0.43): both paths of the rule were exercised
    low, high = (0.02, 0.2) if quality == "poor" else (0.3, 0.99)
    assert low < out.acceptance_rate < high, out.acceptance_rate


def test_plain_sampling_loop_matches_the_full_models_distribution(setup):
    vlm, _, batch, joint = setup
    out = generate(vlm, GreedyDecoder(vlm.decoder, ()), **batch, max_new_tokens=3, generation_config=CONFIG,
                   generator=torch.Generator().manual_seed(1))
    assert _p_value(out.tokens, joint)[0] > ALPHA


def test_a_rule_that_accepts_every_draft_is_caught(setup):
    vlm, _, batch, joint = setup
    n, imitation = _draft(vlm, "poor")
    decoder = SelfSpeculativeDecoder(vlm.decoder, n, imitation, 2, eos_token_id=())
    broken = _AlwaysAccept(logits_warpers(CONFIG), torch.Generator().manual_seed(0))
    p_value, _ = _p_value(_decode(vlm, decoder, batch, broken).tokens, joint)
    assert p_value < ALPHA, p_value


def test_sampling_is_reproducible_with_a_generator(setup):
    vlm, _, batch, _ = setup
    decoder = SelfSpeculativeDecoder(vlm.decoder, 1, None, 2, eos_token_id=())
    small = {k: v[:64] for k, v in batch.items()}
    runs = [generate(vlm, decoder, **small, max_new_tokens=6, generation_config=CONFIG,
                     generator=torch.Generator().manual_seed(7)).tokens for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs[0]}) > 8  # and they are samples, not one repeated sequence


