"""The test stage's record: the sequences where SSD departs from the full model, and their float64 recheck."""

import json
from dataclasses import replace

import pytest

import lightning_ssd.models.base
from lightning_ssd.decoding.engine import DraftOnlyDecoder
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.reproduce import cli_stages
from lightning_ssd.reproduce.cli_stages import RunContext, write_fragments
from lightning_ssd.reproduce.settings import QUICK
from lightning_ssd.reproduce.stages import LAYERSKIP_TEST, SYNTHETIC

SSD_TEST = SYNTHETIC / "ssd_test.yaml"


def _unverified_ssd(mode, decoder, eos_token_id=(), spec=None, **kwargs):
    """`build_decoder` with a broken "ssd": the draft alone, never verified, so it is not the full model's output."""
    if mode == "ssd":
        return DraftOnlyDecoder(decoder, replace(spec, imitation=None), eos_token_id)
    return build_decoder(mode, decoder, eos_token_id, spec, **kwargs)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    write_fragments(root / "fragments")
    return RunContext(QUICK, 0, root, root / "fragments")


@pytest.fixture(scope="module")
def imitation_checkpoint(ctx):
    """An imitation network trained for one epoch on the tiny preset at n = 2."""
    cli_stages.imitation(ctx, ctx.root / "imitation", "tiny-llava", 2, 1)
    return ctx.root / "imitation" / "checkpoints" / "last.ckpt"


def _test_stage(ctx, out, checkpoint=None):
    config = LAYERSKIP_TEST if checkpoint is None else SSD_TEST
    cli_stages.test(ctx, out, "tiny-llava", 2, ("full", "ssd"), checkpoint, config)
    return json.loads((out / "metrics.json").read_text())


def test_an_identical_ssd_needs_no_float64_recheck(ctx):
    record = _test_stage(ctx, ctx.root / "lossless")
    assert record["metrics"]["test/ssd_identical"] == 1.0
    assert record["mismatches"] == {"ssd": []} and "float64" not in record
    assert not (ctx.root / "lossless" / "float64").exists()


@pytest.mark.parametrize("row", ["plain exit", "imitation"])
def test_a_broken_ssd_is_recorded_and_stays_broken_in_float64(row, ctx, imitation_checkpoint, monkeypatch):
    monkeypatch.setattr(lightning_ssd.models.base, "build_decoder", _unverified_ssd)
    out = ctx.root / "broken" / row
    record = _test_stage(ctx, out, imitation_checkpoint if row == "imitation" else None)
    mismatches, identical = record["mismatches"]["ssd"], record["metrics"]["test/ssd_identical"]
    assert mismatches and len(mismatches) == round((1 - identical) * QUICK.num_test)
    first = mismatches[0]
    assert first["full_token"] != first["ssd_token"] and 0 <= first["position"] < QUICK.max_new_tokens
    # a defect, unlike a rounding tie, does not go away in exact arithmetic
    exact = record["float64"]
    assert exact["metrics"]["test/ssd_identical"] < 1.0 and exact["mismatches"]["ssd"]
    assert (out / "float64" / "lightning_logs").is_dir()
