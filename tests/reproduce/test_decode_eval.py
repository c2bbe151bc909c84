"""In-process decoding of a split (Draft & Verify, the d sweep): identity, mismatches and their float64 recheck."""

from dataclasses import replace

import pytest
import torch

import lightning_ssd.reproduce.decode_eval as decode_eval
from lightning_ssd.backbones import load_backbone, load_processor
from lightning_ssd.decoding.engine import DraftOnlyDecoder
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.reproduce.decode_eval import evaluate_decoders, split_batches
from lightning_ssd.reproduce.settings import QUICK
from lightning_ssd.timing import ImplausibleSpeedupWarning

BACKBONE = "tiny-llava"


@pytest.fixture(scope="module")
def split():
    return load_backbone(BACKBONE).eval(), load_processor(BACKBONE).tokenizer, split_batches(BACKBONE, QUICK, "test")


def _decoders(model):
    eos = model.eos_token_id
    return {"full": build_decoder("full", model.decoder, eos),
            "ssd": build_decoder("ssd", model.decoder, eos, DraftSpec(2)),
            # the draft alone, never verified: not the full model's output
            "unverified": DraftOnlyDecoder(model.decoder, DraftSpec(1), eos)}


def test_a_decoder_that_differs_is_recorded_and_rechecked_in_float64(split):
    vlm, tokenizer, batches = split
    result = evaluate_decoders(vlm, _decoders, batches, tokenizer, QUICK.max_new_tokens)
    metrics, mismatches = result["metrics"], result["mismatches"]
    assert metrics["test/ssd_identical"] == 1.0 and mismatches["ssd"] == []
    wrong = mismatches["unverified"]
    assert wrong and len(wrong) == round((1 - metrics["test/unverified_identical"]) * QUICK.num_test)
    assert all(m["full_token"] != m["ssd_token"] for m in wrong)
    # SSD stays exact in float64; a decoder that does not verify stays wrong there
    exact = result["float64"]
    assert exact["metrics"]["test/ssd_identical"] == 1.0 and exact["mismatches"]["ssd"] == []
    assert exact["metrics"]["test/unverified_identical"] < 1.0 and exact["mismatches"]["unverified"]
    assert next(vlm.parameters()).dtype == torch.float32  # the recheck decodes a copy


def test_identical_decoders_need_no_recheck(split):
    vlm, tokenizer, batches = split

    def lossless(model):
        return {k: v for k, v in _decoders(model).items() if k != "unverified"}

    result = evaluate_decoders(vlm, lossless, batches, tokenizer, QUICK.max_new_tokens)
    assert result["mismatches"] == {"ssd": []} and "float64" not in result


def test_a_speedup_its_tau_cannot_give_is_warned_about(split, monkeypatch):
    vlm, tokenizer, batches = split
    decoders = {"full": build_decoder("full", vlm.decoder, vlm.eos_token_id),
                "ssd": build_decoder("ssd", vlm.decoder, vlm.eos_token_id, DraftSpec(2))}
    real = decode_eval.generate

    def slow_baseline(model, decoder, **kwargs):  # the full model's clock runs 100 times slow: a fabricated timing
        result = real(model, decoder, **kwargs)
        if decoder is not decoders["full"]:
            return result
        return replace(result, sequences=tuple(replace(s, prefill_time_s=100 * s.prefill_time_s,
                                                       decode_time_s=100 * s.decode_time_s) for s in result.sequences))

    monkeypatch.setattr(decode_eval, "generate", slow_baseline)
    with pytest.warns(ImplausibleSpeedupWarning, match="reproduce ssd: a measured speedup"):
        metrics = evaluate_decoders(vlm, lambda model: decoders, batches, tokenizer, QUICK.max_new_tokens)["metrics"]
    assert metrics["test/ssd/speedup"] > 10 * metrics["test/ssd/tau"]


def test_dialog_is_ranked_and_draft_only_decoders_are_not_compared():
    vlm, tokenizer = load_backbone(BACKBONE).eval(), load_processor(BACKBONE).tokenizer
    batches = split_batches(BACKBONE, QUICK, "test", images=2, task="visdial")

    def decoders(model):
        eos = model.eos_token_id
        return {"full": build_decoder("full", model.decoder, eos),
                "draft": build_decoder("draft", model.decoder, eos, DraftSpec(1)),
                "ssd": build_decoder("ssd", model.decoder, eos, DraftSpec(2))}

    result = evaluate_decoders(vlm, decoders, batches, tokenizer, 4)
    metrics = result["metrics"]
    assert all(f"test/{m}/MRR" in metrics and 0 < metrics[f"test/{m}/MRR"] <= 100 for m in ("full", "draft", "ssd"))
    assert metrics["test/ssd/MRR"] == metrics["test/full/MRR"]  # lossless: the full model's answers, its ranks
    assert "test/draft_identical" not in metrics and "draft" not in result["mismatches"]
    sequences = sum(len(b["sample_ids"]) for b in batches)
    for mode in ("full", "draft", "ssd"):
        assert len(result["per_sequence"][mode]) == sequences
    assert all(s["judged"] >= s["accepted"] and s["length"] <= 4 for s in result["per_sequence"]["ssd"])
