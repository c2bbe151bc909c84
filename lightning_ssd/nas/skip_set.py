"""Bayesian optimisation of Draft & Verify's skip set (Zhang et al. 2023, section 3.2) with optuna's TPE sampler.

One binary choice per decoder layer: skip it in the draft or not (whole layers; see decoding/skip_drafter.py).
Each trial decodes the held-out prompts greedily with that draft and scores the draft speed / acceptance trade-off:

- objective "cost" (default, deterministic): the speedup over plain decoding predicted from what the decoding did,
      score = sum(emitted) * (L + H) / sum over cycles of ((k + 1) m + k (L - m - |K|) + k H + (L - m) + H)
  for cycles drafting k tokens, skip set K, first skipped layer m and the LM head's cost H, in decoder-layer FLOPs
  (`decoding/cost.py`): k + 1 passes of the exact layers [0, m), k of the kept layers past m, k draft readouts,
  one verification pass of [m, L) and its head. Like `CostModel`, it counts the verification of a block as one
  pass per layer, which holds where decoding is bound by reading weights;
- objective "time": the measured decode speedup over the full model's plain decoding on the same prompts, as the
  original searched by measured tokens per second. Timings vary from run to run, so the search is then not
  reproducible even for a fixed seed.

The sampler is seeded and trials run one after another; with the "cost" objective the same seed gives the same
trials. A skip set that skips every layer is scored 0 (no draft model); one seen before is not decoded again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lightning_ssd.backbones.vlm import DecoderPrompt, SplitVLM
from lightning_ssd.decoding.acceptance import GreedyAcceptance
from lightning_ssd.decoding.cost import measure_cost_model
from lightning_ssd.decoding.engine import GreedyDecoder, SpeculativeDecoder
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.decoding.schedule import DraftLength
from lightning_ssd.decoding.skip_drafter import SkipLayerDrafter

Objective = Literal["cost", "time"]
OBJECTIVES: tuple[str, ...] = ("cost", "time")


@dataclass(frozen=True)
class SkipTrial:
    """One trial of the search.

    Attributes:
        number: the trial's index in the study.
        skip_layers: the layers its draft skipped, ascending.
        score: the objective (a speedup over plain decoding; 0 for a skip set that skips every layer).
        alpha: acceptance rate of its drafts on the prompts (NaN when nothing was judged).
        tau: tokens emitted per verification pass (NaN when nothing was drafted).
    """

    number: int
    skip_layers: tuple[int, ...]
    score: float
    alpha: float
    tau: float


@dataclass(frozen=True)
class SkipSetSearch:
    """The search's outcome: the best skip set, its score, and every trial in order."""

    skip_layers: tuple[int, ...]
    score: float
    trials: tuple[SkipTrial, ...]


def draft_verify_speedup(result: GenerationResult, drafter: SkipLayerDrafter, head_cost: float) -> float:
    """The "cost" objective: predicted speedup over plain decoding of the cycles in `result` (module docstring)."""
    L, m = drafter.decoder.num_layers, drafter.layer
    rest = L - m - len(drafter.skip)  # kept layers in [m, L): every skipped layer is at or past m
    cycles = [c for c in result.cycles if c.deep_passes]
    cost = sum((c.drafted + 1) * m + c.drafted * (rest + head_cost) + (L - m) + head_cost for c in cycles)
    return sum(c.emitted for c in cycles) * (L + head_cost) / cost if cost else float("nan")


def _optuna():
    try:
        import optuna
    except ImportError as err:  # an optional extra: the rest of the package runs without it
        raise ImportError("the skip-set search needs optuna: pip install 'lightning_ssd[baselines]'") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would bury the caller's progress
    return optuna


def _check(prompts: Sequence[DecoderPrompt], n_trials: int, max_new_tokens: int, objective: str) -> None:
    if not prompts:
        raise ValueError("prompts is empty: give the held-out prompts (SplitVLM.encode outputs) to search on")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if max_new_tokens < 2:
        raise ValueError(f"max_new_tokens must be >= 2 (the first token is drafted by no one), got {max_new_tokens}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


def _decode(decoder, prompts: Sequence[DecoderPrompt], max_new_tokens: int) -> GenerationResult:
    rule = GreedyAcceptance()
    return GenerationResult(tuple(s for p in prompts for s in decoder.decode(p, max_new_tokens, rule)))


def search_skip_set(
    vlm: SplitVLM,
    prompts: Sequence[DecoderPrompt],
    n_trials: int = 50,
    seed: int = 0,
    draft: int | str | DraftLength = 4,
    confidence_threshold: float | None = None,
    max_new_tokens: int = 32,
    objective: Objective = "cost",
    startup_trials: int = 10,
) -> SkipSetSearch:
    """TPE search of the skip set that maximises the objective on `prompts` (module docstring).

    Args:
        vlm: the backbone.
        prompts: held-out prompt batches, as `SplitVLM.encode` returns them.
        n_trials: trials of the study.
        seed: the TPE sampler's seed.
        draft: d per cycle while scoring, as for the decoder.
        confidence_threshold: D&V's draft-exiting threshold while scoring (None: d drafts per cycle).
        max_new_tokens: tokens decoded per prompt.
        objective: "cost" (predicted from the cycles, reproducible) or "time" (measured).
        startup_trials: random trials before TPE models the scores.
    """
    _check(prompts, n_trials, max_new_tokens, objective)
    optuna = _optuna()
    decoder, eos = vlm.decoder, vlm.eos_token_id
    L = decoder.num_layers
    head_cost = measure_cost_model(decoder, 1)[0].H
    plain_s = 0.0
    if objective == "time":
        plain = _decode(GreedyDecoder(decoder, eos), prompts, max_new_tokens)
        plain_s = plain.decode_time_s / max(plain.num_tokens - len(plain.sequences), 1)
    seen: dict[tuple[int, ...], tuple[float, float, float]] = {}

    def score(skip: tuple[int, ...]) -> tuple[float, float, float]:
        if len(skip) == L:
            return 0.0, math.nan, math.nan
        drafter = SkipLayerDrafter(decoder, skip, eos, confidence_threshold)
        result = _decode(SpeculativeDecoder(decoder, drafter, draft, eos), prompts, max_new_tokens)
        if objective == "cost":
            value = draft_verify_speedup(result, drafter, head_cost)
        else:
            value = plain_s * max(result.num_tokens - len(result.sequences), 1) / result.decode_time_s
        return value, result.acceptance_rate, result.mean_accepted_length

    def trial_objective(trial) -> float:
        skip = tuple(i for i in range(L) if trial.suggest_categorical(f"skip_{i}", [False, True]))
        if skip not in seen:
            seen[skip] = score(skip)
        value, alpha, tau = seen[skip]
        trial.set_user_attr("alpha", alpha)
        trial.set_user_attr("tau", tau)
        return value

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(trial_objective, n_trials=n_trials, n_jobs=1)
    trials = tuple(
        SkipTrial(t.number, tuple(i for i in range(L) if t.params[f"skip_{i}"]), float(t.value),
                  float(t.user_attrs["alpha"]), float(t.user_attrs["tau"]))
        for t in study.trials
    )
    best = max(trials, key=lambda t: t.score)  # the first of equal scores, as optuna's best_trial
    return SkipSetSearch(best.skip_layers, best.score, trials)
