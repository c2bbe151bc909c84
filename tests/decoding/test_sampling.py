"""Speculative sampling is lossless in distribution: SSD's first sampled tokens follow the full model's exact law.

N = 20,000 rows of one prompt are decoded as one batch with max_new_tokens = 3 and d = 2: the first token comes from
the prefill, the second and third from one draft-verify cycle, so accepted drafts, resampled corrections and bonus
tokens all occur. The empirical joint distribution of the three tokens is compared with the exact one, computed
from transformers' own forward of every prefix with the same logits warpers, by a chi-square test at
alpha = 1e-3 (cells of expected count < 5 pooled). The draws are seeded, so a run is reproducible; over seeds the
test would raise a false alarm once in a thousand runs. A rule that accepts every draft must be caught by the same
test, which shows that it can fail.

The prompt is encoded once and its decoder inputs repeated N times (what N identical rows would encode to), so that
Qwen2.5-VL's M-RoPE positions (3-D, continued by the rope offset) are sampled over as LLaVA's 1-D ones are.
LLaVA-NeXT decodes with LLaVA's decoder and positions (only its image prefix differs), so LLaVA stands for both.
"""


import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare
from transformers import GenerationConfig

from lightning_ssd.backbones import load_backbone, load_processor
from lightning_ssd.decoding.acceptance import SpeculativeSampling, logits_warpers
from lightning_ssd.decoding.engine import GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import chaotic_, make_inputs, tiny_vlm

N = 20_000
ALPHA = 1e-3
CONFIG = GenerationConfig(do_sample=True, temperature=0.8, top_k=5, top_p=0.97)
FAMILIES = ("tiny-llava", "tiny-qwen2.5-vl")


def _one(name):
    """(vlm, processor outputs of one prompt); the chaotic std keeps 20-125 likely token triples under top_k = 5."""
    if name == "tiny-llava":
        return chaotic_(tiny_vlm(name), std=0.12), make_inputs(name, [4])
    vlm, processor = load_backbone(name), load_processor(name)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8))
    text = "<|vision_start|><|image_pad|><|vision_end|>what is in the image ?"
    return chaotic_(vlm, std=0.15), dict(processor(images=[image], text=[text], return_tensors="pt"))


def _repeat(vlm, one, k):
    """The processor outputs of k copies of the one prompt (Qwen2.5-VL's patch rows repeat image by image)."""
    out = {}
    for key, value in one.items():
        out[key] = value.repeat(k, 1) if (key == "pixel_values" and vlm.family == "qwen2.5-vl") else \
            value.expand(k, *value.shape[1:])
    return out


def _expand(prompt, k):
    """The decoder inputs of k identical rows, from those of one."""
    def rows(x, dim):
        return None if x is None else x.expand(*x.shape[:dim], k, *x.shape[dim + 1:]).contiguous()
    positions = prompt.position_ids
    return dataclasses.replace(prompt, inputs_embeds=rows(prompt.inputs_embeds, 0),
                               attention_mask=rows(prompt.attention_mask, 0),
                               position_ids=rows(positions, 1 if positions.ndim == 3 else 0),
                               next_position=rows(prompt.next_position, 0))


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request):
    vlm, one = _one(request.param)
    prompt = _expand(vlm.encode(**one), N)
    return vlm, one, prompt, _exact_joint(vlm, one)


@torch.no_grad()
def _probs(vlm, one, prefixes):
    """p after the warpers of the next token after each prefix of new tokens, by transformers' own forward."""
    k = len(prefixes)
    inputs = _repeat(vlm, one, k)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor(prefixes, dtype=torch.long).view(k, -1)], 1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:  # Qwen2.5-VL places its M-RoPE image positions by these
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == vlm.image_token_id).int()
    logits = vlm.model(**inputs).logits[:, -1]
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
    """(n, imitation) of a poor draft (acceptance ~0.1) and a good one (~0.45). Qwen's layer-1 exit proposes only
    tokens outside the full model's top 5 (never accepted), so its poor draft exits at L/2."""
    L = vlm.decoder.num_layers
    if quality == "good":
        return L - 1, None
    if vlm.family == "qwen2.5-vl":
        return L // 2, None
    torch.manual_seed(3)
    return 1, ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=True).eval()


class _AlwaysAccept(SpeculativeSampling):
    """A broken rule: keeps every draft whatever p says."""

    def accepts(self, u, p_x, q_x):
        return torch.ones_like(p_x, dtype=torch.bool)


def _decode(decoder, prompt, rule):
    return GenerationResult(decoder.decode(prompt, 3, rule))


def _sampling(seed):
    return SpeculativeSampling(logits_warpers(CONFIG), torch.Generator().manual_seed(seed))


def test_exact_distribution_is_a_distribution(setup):
    _, _, _, joint = setup
    assert sum(joint.values()) == pytest.approx(1.0, abs=1e-4)
    assert 20 <= len(joint) <= 125  # top_k = 5 bounds it; chaotic logits keep several tokens per step


@pytest.mark.parametrize("quality", ["poor", "good"])
def test_ssd_sampling_matches_the_full_models_distribution(setup, quality):
    vlm, _, prompt, joint = setup
    n, imitation = _draft(vlm, quality)
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, imitation, 2), ())
    out = _decode(decoder, prompt, _sampling(0))
    p_value, outside = _p_value(out.tokens, joint)
    assert outside == 0
    assert p_value > ALPHA, p_value
    # rejections (with resampling) dominate for the poor draft (alpha ~0.07-0.10), acceptances are common for the
    # good one (~0.43): both paths of the rule were exercised
    low, high = (0.02, 0.2) if quality == "poor" else (0.3, 0.99)
    assert low < out.acceptance_rate < high, out.acceptance_rate


def test_plain_sampling_loop_matches_the_full_models_distribution(setup):
    vlm, _, prompt, joint = setup
    if vlm.family != "llava":
        pytest.skip("the plain loop has no family-specific step; LLaVA's run covers it")
    out = _decode(GreedyDecoder(vlm.decoder, ()), prompt, _sampling(1))
    assert _p_value(out.tokens, joint)[0] > ALPHA


def test_a_rule_that_accepts_every_draft_is_caught(setup):
    vlm, _, prompt, joint = setup
    n, imitation = _draft(vlm, "poor")
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(n, imitation, 2), ())
    broken = _AlwaysAccept(logits_warpers(CONFIG), torch.Generator().manual_seed(0))
    p_value, _ = _p_value(_decode(decoder, prompt, broken).tokens, joint)
    assert p_value < ALPHA, p_value


def test_sampling_is_reproducible_with_a_generator(setup):
    vlm, one, _, _ = setup
    decoder = SelfSpeculativeDecoder(vlm.decoder, DraftSpec(1, None, 2), ())
    small = _repeat(vlm, one, 64)
    runs = [generate(vlm, decoder, **small, max_new_tokens=6, generation_config=CONFIG,
                     generator=torch.Generator().manual_seed(7)).tokens for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs[0]}) > 8  # and they are samples, not one repeated sequence


