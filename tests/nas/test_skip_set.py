"""The Draft & Verify skip-set search: a valid skip set, reproducible for a seed, on a tiny LLaVA.

Layers 2 and 3 of the test model write nothing to the residual stream, so skipping them costs no acceptance: the
search has a skip set better than the full model to find.
"""

import pytest
import torch

from lightning_ssd.decoding.acceptance import GreedyAcceptance
from lightning_ssd.decoding.engine import SpeculativeDecoder
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.decoding.skip_drafter import SkipLayerDrafter
from lightning_ssd.nas.skip_set import draft_verify_speedup, search_skip_set
from tests.helpers import chaotic_, make_inputs, make_redundant_, tiny_vlm

optuna = pytest.importorskip("optuna")

NAME = "tiny-llava"


class FixedSkipSets(optuna.samplers.BaseSampler):
    """Proposes `skip_sets[i]` in trial i."""

    def __init__(self, skip_sets: list[tuple[int, ...]]) -> None:
        self.skip_sets = skip_sets

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return int(param_name.removeprefix("skip_")) in self.skip_sets[trial.number]


@pytest.fixture(scope="module")
def setup():
    vlm = make_redundant_(chaotic_(tiny_vlm(NAME)), 2)
    prompts = []
    for seed, lengths in ((1, [3, 6]), (2, [5])):
        batch = make_inputs(NAME, lengths, seed=seed)
        prompts.append(vlm.encode(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]))
    return vlm, prompts


def _search(setup, seed=0, **kwargs):
    vlm, prompts = setup
    return search_skip_set(vlm, prompts, n_trials=10, seed=seed, max_new_tokens=12, startup_trials=4, **kwargs)


def test_search_returns_a_valid_skip_set_and_every_trial(setup):
    vlm, _ = setup
    L = vlm.decoder.num_layers
    result = _search(setup)
    assert len(result.trials) == 10 and [t.number for t in result.trials] == list(range(10))
    assert set(result.skip_layers) <= set(range(L)) and len(result.skip_layers) < L
    assert list(result.skip_layers) == sorted(result.skip_layers)
    assert result.score == max(t.score for t in result.trials)
    assert (result.skip_layers, result.score) in [(t.skip_layers, t.score) for t in result.trials]
    # skipping only redundant layers keeps every draft and saves layers: better than the full model as draft (1.0)
    assert result.score > 1.0 and set(result.skip_layers) <= {2, 3}


def test_search_is_reproducible_for_a_seed(setup):
    first, again = _search(setup, seed=3), _search(setup, seed=3)
    assert first == again  # trials compare as values: the same skip sets, scores, alpha and tau
    assert len({t.skip_layers for t in first.trials}) > 1


def test_cost_objective_on_redundant_layers(setup):
    vlm, prompts = setup
    drafter = SkipLayerDrafter(vlm.decoder, (2, 3), vlm.eos_token_id)
    decoder = SpeculativeDecoder(vlm.decoder, drafter, 4, vlm.eos_token_id)
    result = GenerationResult(decoder.decode(prompts[1], 12, GreedyAcceptance()))
    assert result.acceptance_rate == 1.0
    # every cycle: (k + 1) passes of layers [0, 2), k heads, one pass of [2, 4) and its head, for k + 1 tokens
    H = 1.5
    cycles = [c for c in result.cycles if c.deep_passes]
    cost = sum((c.drafted + 1) * 2 + c.drafted * H + 2 + H for c in cycles)
    expected = sum(c.emitted for c in cycles) * (4 + H) / cost
    assert draft_verify_speedup(result, drafter, H) == pytest.approx(expected)
    # the full model drafting costs what plain decoding costs (no EOS here: no draft is cut after one)
    empty = SkipLayerDrafter(vlm.decoder, ())
    full = GenerationResult(SpeculativeDecoder(vlm.decoder, empty, 4).decode(prompts[1], 12, GreedyAcceptance()))
    assert draft_verify_speedup(full, empty, H) == pytest.approx(1.0)


def test_time_objective_is_the_measured_speedup(setup, monkeypatch):
    vlm, prompts = setup
    passes = 0  # the clock reads decoder layer passes: the time of decoding bound by reading weights

    def count(*_):
        nonlocal passes
        passes += 1

    hooks = [layer.register_forward_pre_hook(count) for layer in vlm.decoder.layers]
    monkeypatch.setattr("lightning_ssd.decoding.engine._Clock.__call__", lambda self: float(passes))
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda **kwargs: FixedSkipSets([(2, 3), ()]))
    try:
        result = search_skip_set(vlm, prompts[1:], n_trials=2, max_new_tokens=5, objective="time")
    finally:
        for hook in hooks:
            hook.remove()
    # 4 tokens after the first: plain decoding takes 4 x 4 layer passes. Skipping {2, 3}, one cycle drafts 3 tokens
    # (3 passes of layers [0, 2)), runs the last draft through [0, 2) and verifies with one pass of [2, 4): 10 passes.
    # The full model as draft: 3 x layers [0, 3) and [3, 4), the last draft through [0, 3), [3, 4) once: 16 passes.
    assert [(t.skip_layers, t.alpha, t.tau) for t in result.trials] == [((2, 3), 1.0, 4.0), ((), 1.0, 4.0)]
    assert [t.score for t in result.trials] == pytest.approx([16 / 10, 16 / 16])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prompts": []}, "prompts is empty"),
    ({"n_trials": 0}, "n_trials must be >= 1"),
    ({"max_new_tokens": 1}, "max_new_tokens must be >= 2"),
    ({"objective": "speed"}, "unknown objective 'speed'"),
])
def test_bad_search_settings_are_refused(setup, kwargs, match):
    vlm, prompts = setup
    settings = {"prompts": prompts, "n_trials": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        search_skip_set(vlm, **settings)


def test_skipping_every_layer_scores_zero(setup, monkeypatch):
    vlm, prompts = setup
    every = tuple(range(vlm.decoder.num_layers))  # the one skip set the search must not decode
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda **kwargs: FixedSkipSets([every]))
    result = search_skip_set(vlm, prompts, n_trials=1)
    assert result.trials[0].skip_layers == every
    assert result.trials[0].score == 0.0 and torch.isnan(torch.tensor(result.trials[0].alpha))
