"""The sweep over d times after a warm-up, keeps the median of its repeats and flags what its tau makes impossible."""

from types import SimpleNamespace

import pytest
import torch

import lightning_ssd.callbacks.sweep as sweep_module
from lightning_ssd.callbacks import DraftLengthSweep
from lightning_ssd.callbacks.sweep import sweep_table
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.timing import FLAG, ImplausibleSpeedupWarning
from tests.helpers import fabricated_result

BATCH = {"prompt_input_ids": torch.ones(1, 3, dtype=torch.long), "prompt_attention_mask": torch.ones(1, 3),
         "references": [["yes"]], "task": "vqa"}


def _sweep(monkeypatch, greedy_times: list[float], ssd_seconds: float) -> tuple[DraftLengthSweep, dict, list]:
    """Runs the real sweep on one batch whose decoders return hand-made results: greedy takes `greedy_times` in
    turn (the warm-up first), SSD (tau 1.6) `ssd_seconds` each time."""
    calls = []
    greedy = iter(greedy_times)
    monkeypatch.setattr(sweep_module, "build_decoder", lambda mode, dec, eos, spec: spec.draft if mode == "ssd" else 0)

    def generate(vlm, d, **inputs):
        calls.append(d)
        if d == 0:
            return fabricated_result([[1] * 8], next(greedy), drafts=0)
        return fabricated_result([[2, 1, 2, 1, 2]], ssd_seconds)

    monkeypatch.setattr(sweep_module, "generate", generate)
    monkeypatch.setattr(DraftLengthSweep, "_batches", lambda self, trainer: [BATCH])
    module = SimpleNamespace(n=1, spec=DraftSpec(1), training=False, eval=lambda: None, train=lambda mode: None,
                             vlm=SimpleNamespace(decoder=None, eos_token_id=[2]),
                             max_new_tokens=8, decode_text=lambda tokens: ["yes"] * len(tokens))
    trainer = SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(batch_to_device=lambda b: b),
                              loggers=[], global_step=0)
    callback = DraftLengthSweep(draft_lengths=[4], repeats=3)
    return callback, callback.sweep(trainer, module, "fit"), calls


def test_a_cold_baseline_timed_once_no_longer_makes_the_figure(monkeypatch, recwarn):
    # the warm-up pays the cold start (100 s); one slow repeat (50 s) beside two of 1 s: the median is 1 s
    callback, results, calls = _sweep(monkeypatch, [100.0, 1.0, 50.0, 1.0], ssd_seconds=0.8)
    assert calls == [0, 4, 0, 4, 0, 4, 0, 4]  # warm-up of each decoder, then three repeats in turn
    assert results[4]["speedup"] == pytest.approx(1.25) and results[4]["tau"] == pytest.approx(1.6)
    assert callback.flags == {} and not [w for w in recwarn if w.category is ImplausibleSpeedupWarning]


def test_an_impossible_speedup_is_flagged_in_the_table(monkeypatch):
    with pytest.warns(ImplausibleSpeedupWarning, match="fit sweep, d = 4"):
        callback, results, _ = _sweep(monkeypatch, [1.0, 107.7, 107.7, 107.7], ssd_seconds=1.0)
    assert results[4]["speedup"] == pytest.approx(107.7) and list(callback.flags) == [4]
    table = sweep_table(results, callback.flags)
    assert f"| 4 | 107.700 {FLAG} | 1.600 |" in table and f"{FLAG} d = 4: fit sweep, d = 4: a measured" in table


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        DraftLengthSweep(repeats=0)
