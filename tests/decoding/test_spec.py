"""The draft specification: validated once with the setting named as the user gave it, and handed unchanged to
the decoders and their drafter."""

from dataclasses import replace

import pytest

from lightning_ssd.decoding.checks import MODES, check_modes, parse_draft
from lightning_ssd.decoding.continuous import ContinuousEngine
from lightning_ssd.decoding.draft_policy import ScheduledDraft
from lightning_ssd.decoding.drafters import ShallowDrafter
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.schedule import DynamicDraftLength
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models import FineTuneModule, ImitationModule
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import tiny_vlm


@pytest.fixture(scope="module")
def vlm():
    return tiny_vlm("tiny-llava")  # L = 4, hidden size 64


@pytest.mark.parametrize(("prefix", "fields", "message"), [
    ("", {"draft": 0}, r"^draft=0: d must be >= 1"),
    ("--", {"draft": "fast"}, r"^--draft must be an integer d >= 1 or 'dynamic' or 'adaptive', got 'fast'"),
    ("model.init_args.", {"draft": -3}, r"^model.init_args.draft=-3: d must be >= 1"),
    ("", {"confidence_threshold": 1.5}, r"^draft confidence_threshold must be in \[0, 1\]"),
    ("--", {"confidence_threshold": -0.1}, r"^draft --confidence-threshold must be in \[0, 1\]"),
    ("model.init_args.", {"confidence_threshold": 2.0}, r"^draft model.init_args.confidence_threshold must be"),
])
def test_a_bad_setting_is_refused_by_its_name(prefix, fields, message):
    with pytest.raises(ValueError, match=message):
        DraftSpec(2, prefix=prefix, **fields)


@pytest.mark.parametrize(("prefix", "n", "message"), [
    ("", 0, r"^n=0: the draft exit layer must be in \[1, L-1\] = \[1, 3\]"),
    ("--", 4, r"^--n=4: the draft exit layer must be in \[1, L-1\] = \[1, 3\]"),
    ("model.init_args.", None, r"^model.init_args.n=None: the draft exit layer must be in"),
])
def test_the_exit_layer_is_checked_against_the_backbone_by_its_name(vlm, prefix, n, message):
    spec = DraftSpec(n, prefix=prefix)  # n's range needs the backbone
    with pytest.raises(ValueError, match=message):
        spec.check(vlm.decoder)
    with pytest.raises(ValueError, match=message):
        ShallowDrafter(vlm.decoder, spec)


def test_an_imitation_network_of_another_width_is_refused(vlm):
    with pytest.raises(ValueError, match="imitation network width 32 does not match the backbone hidden size 64"):
        DraftSpec(2, ImitationNetwork(32)).check(vlm.decoder)


def test_settings_are_parsed_once_and_compared_by_value():
    assert DraftSpec(2, draft="6").draft == 6
    assert DraftSpec(2, draft="dynamic").draft == "dynamic"
    assert DraftSpec(2, draft="6", prefix="--") == DraftSpec(2, draft=6)  # how it was given is no part of it
    assert parse_draft("adaptive") == "adaptive"
    with pytest.raises(ValueError, match="'dynamic', got 'adaptive'"):
        parse_draft("adaptive", "--draft", ("dynamic",))  # a batch decoder has no per-row policy


@pytest.mark.parametrize("mode", ["draft_imit", "ssd"])
def test_the_spec_reaches_the_drafter_unchanged(vlm, mode):
    spec = DraftSpec(2, ImitationNetwork(64).eval(), "dynamic", 0.4)
    decoder = build_decoder(mode, vlm.decoder, vlm.eos_token_id, spec)
    if mode == "ssd":
        assert decoder.drafter.spec is spec and decoder.spec is spec
        assert decoder.drafter.layer == spec.n and decoder.drafter.imitation is spec.imitation
        assert decoder.drafter.confidence_threshold == 0.4 and decoder.schedule == DynamicDraftLength()
    else:
        assert decoder.spec is spec and decoder.n == 2 and decoder.imitation is spec.imitation
    # the plain early exit ("Draft w/o Im") is the same spec without its network
    assert build_decoder("draft", vlm.decoder, vlm.eos_token_id, spec).spec == replace(spec, imitation=None)


def test_the_stream_engine_drafts_with_the_spec_it_is_given(vlm):
    spec = DraftSpec(1, draft="dynamic")
    engine = ContinuousEngine(vlm, ShallowDrafter(vlm.decoder, spec, vlm.eos_token_id), max_rows=2, max_slots=64)
    assert engine.drafter.spec is spec and engine.policy == ScheduledDraft(DynamicDraftLength())


def test_the_modules_hand_their_spec_to_the_decoders():
    module = FineTuneModule("tiny-llava", n=2, draft=3, confidence_threshold=0.5, eval_modes=["full", "ssd"])
    module.setup("validate")
    assert module.spec == DraftSpec(2, None, 3, 0.5)
    assert module.decoders()["ssd"].drafter.spec is module.spec
    imitation = ImitationModule("tiny-llava", n=2, draft="dynamic")
    imitation.setup("validate")
    assert imitation.spec.imitation is imitation.imitation_net and imitation.n == 2
    assert imitation.decoders()["ssd"].drafter.spec is imitation.spec


def test_the_mode_checks_are_one_and_name_the_setting(vlm):
    for setting, call in (("decoding mode", lambda: build_decoder("draft_imit", vlm.decoder, (), DraftSpec(2))),
                          ("eval_modes", lambda: check_modes(["full", "draft_imit"], False, 2))):
        with pytest.raises(ValueError, match=f"^{setting}: 'draft_imit' needs an imitation network"):
            call()
    with pytest.raises(ValueError, match=r"^decoding mode \['ssd'\] decode with a draft model: set n"):
        build_decoder("ssd", vlm.decoder, ())
    with pytest.raises(ValueError, match=rf"unknown mode\(s\) \['beam'\]; choose from {', '.join(MODES)}"):
        build_decoder("beam", vlm.decoder, ())
