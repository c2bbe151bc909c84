"""Continuous batching is lossless: every request's greedy tokens equal transformers' generate for it alone.

Requests arrive at different cycles, have different prompt lengths and budgets, queue while every row is taken
(max_rows = 2 for 5 requests, so rows are freed and reused), end inside a draft, and are cancelled mid-way. The
tiny models are the chaotic ones of test_lossless.py and test_qwen.py, whose top-2 logit gaps clear batch noise.
LLaVA-NeXT, whose tiny model is a checkpoint folder with its processor, is run through the engine in
test_llava_next.py.
"""

import pytest
import torch
from scipy.stats import chisquare

from lightning_ssd.decoding.acceptance import SpeculativeSampling
from lightning_ssd.decoding.continuous import WARM_UP_ROWS, ContinuousEngine, Request, warm_up_count
from lightning_ssd.decoding.cost import measure_cost_model
from lightning_ssd.decoding.draft_policy import AdaptiveDraft
from lightning_ssd.decoding.drafters import ShallowDrafter
from lightning_ssd.decoding.prompt_lookup import PromptLookupDrafter
from lightning_ssd.decoding.row_rules import RowRule
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.decoding import test_draft_policy, test_qwen, test_sampling
from tests.helpers import chaotic_, image_prefix_length, make_inputs, reference_generate, tiny_vlm

MAX_NEW = 16
EOS = 2
FAMILIES = ("tiny-llava", "tiny-blip2-opt", "tiny-blip2-t5", "tiny-qwen2.5-vl")
# (seed, text length) of each request's random prompt, picked so that no reference repeats one token throughout
PROMPTS = {"tiny-llava": [(0, 3), (1, 8), (2, 5), (3, 6), (4, 2)],
           "tiny-blip2-opt": [(9, 6), (10, 7), (16, 7), (27, 6), (33, 6)],
           "tiny-blip2-t5": [(0, 3), (4, 7), (5, 8), (6, 3), (7, 4)]}
MODES = ("plain", "ssd-exit", "ssd-attention-imitation-dynamic", "ssd-adaptive", "prompt-lookup")


def _qwen_requests():
    batch = test_qwen.inputs(lengths=(3, 7, 5, 4, 6), sizes=((56, 56), (112, 84), (84, 56), (56, 84), (56, 56)))
    grids, rows = batch["image_grid_thw"], []
    for i in range(len(grids)):
        keep = batch["attention_mask"][i].bool()
        start = int(grids[:i].prod(-1).sum())
        rows.append({"pixel_values": batch["pixel_values"][start : start + int(grids[i].prod())],
                     "image_grid_thw": grids[i : i + 1], "input_ids": batch["input_ids"][i : i + 1, keep]})
    return rows


def _reference(vlm, inputs, max_new=MAX_NEW, **kwargs):
    batch = dict(inputs, attention_mask=torch.ones_like(inputs["input_ids"]))
    if vlm.family == "qwen2.5-vl":
        batch["mm_token_type_ids"] = (inputs["input_ids"] == vlm.image_token_id).int()
    tokens = reference_generate(vlm, batch, max_new, **kwargs)[0].tolist()
    eos = kwargs.get("eos_token_id", EOS)
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    if request.param == "tiny-qwen2.5-vl":
        vlm, inputs = test_qwen.tiny_qwen(), _qwen_requests()
    else:
        vlm = chaotic_(tiny_vlm(request.param))
        inputs = []
        for seed, length in PROMPTS[request.param]:
            batch = make_inputs(request.param, [length], seed=seed)
            inputs.append({"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"]})
    return vlm, inputs, [_reference(vlm, x) for x in inputs]


def _preset(vlm) -> str:
    return {"llava": "tiny-llava", "blip2-opt": "tiny-blip2-opt", "blip2-t5": "tiny-blip2-t5"}[vlm.family]


def _row(vlm, length: int, seed: int) -> dict:
    batch = make_inputs(_preset(vlm), [length], seed=seed)
    return {"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"]}


def _engine(vlm, mode, max_rows=2, max_slots=160):
    L = vlm.decoder.num_layers
    if mode == "plain":
        return ContinuousEngine(vlm, None, max_rows=max_rows, max_slots=max_slots)
    if mode == "prompt-lookup":
        return ContinuousEngine(vlm, PromptLookupDrafter(vlm.decoder), 4, max_rows=max_rows, max_slots=max_slots)
    if mode == "ssd-exit":
        return ContinuousEngine(vlm, ShallowDrafter(vlm.decoder, DraftSpec(1), vlm.eos_token_id), 4, max_rows=max_rows,
                                max_slots=max_slots)
    if mode == "ssd-adaptive":
        cost, _ = measure_cost_model(vlm.decoder, L - 1)
        # a high prior: the random drafts' acceptance must pull each row's d down as the row goes
        policy = AdaptiveDraft(cost, max_d=6, prior=0.95)
        return ContinuousEngine(vlm, ShallowDrafter(vlm.decoder, DraftSpec(L - 1), vlm.eos_token_id), policy,
                                max_rows=max_rows, max_slots=max_slots)
    torch.manual_seed(1)
    imitation = ImitationNetwork(vlm.decoder.hidden_size, residual=False, attention=True).eval()
    return ContinuousEngine(vlm, ShallowDrafter(vlm.decoder, DraftSpec(L // 2, imitation), vlm.eos_token_id), "dynamic",
                            max_rows=max_rows, max_slots=max_slots)


def _staggered(engine, requests):
    """Two requests at once, then one more per step; returns results in submission order and the most live rows."""
    ids = [engine.submit(r) for r in requests[:2]]
    most = 0
    for request in requests[2:]:
        engine.step()
        most = max(most, engine.live_rows)
        ids.append(engine.submit(request))
    while engine.has_work:
        engine.step()
        most = max(most, engine.live_rows)
    return [engine.results.pop(i) for i in ids], most


def test_references_are_not_degenerate(family):
    _, _, refs = family
    assert all(len(set(ref)) >= min(4, len(ref)) for ref in refs), refs  # no row repeats one token
    assert sum(len(ref) >= 8 for ref in refs) >= 3, refs  # most run long enough for several cycles


@pytest.mark.parametrize("mode", MODES)
def test_every_request_equals_generate_alone(family, mode):
    vlm, inputs, refs = family
    engine = _engine(vlm, mode)
    results, most = _staggered(engine, [Request(x, MAX_NEW) for x in inputs])
    assert [list(r.tokens) for r in results] == refs
    assert most == 2  # the queue was used, and rows were freed and reused
    drafted = sum(c.drafted for r in results for c in r.cycles)
    assert (drafted == 0) == (mode == "plain")


def test_adaptive_draft_length_follows_each_rows_acceptance(family):
    vlm, inputs, _ = family
    engine = _engine(vlm, "ssd-adaptive")
    result = engine.run([Request(inputs[1], MAX_NEW)])[0]
    drafted = [c.drafted for c in result.cycles]
    assert drafted[0] == engine.policy.best([0.95])  # the prior's d, priced in FLOPs before any cycle is timed
    rate = sum(c.accepted for c in result.cycles) / max(1, sum(min(c.accepted + 1, c.drafted) for c in result.cycles))
    if rate < 0.9:  # the draft is worse than the prior: d must come down
        assert min(drafted) < drafted[0], drafted


@pytest.mark.parametrize("mode", ["plain", "ssd-exit"])
def test_requests_end_inside_a_draft_at_their_budget_or_stop_token(family, mode):
    vlm, inputs, refs = family
    row = refs[1]
    stop = next(t for i, t in enumerate(row) if i >= 3 and t not in row[:i])
    requests = [Request(inputs[0], 1), Request(inputs[1], MAX_NEW, stop_token_ids=(stop,)), Request(inputs[2], 2),
                Request(inputs[3], 6)]
    results, _ = _staggered(_engine(vlm, mode, max_rows=3), requests)
    assert [list(r.tokens) for r in results] == [refs[0][:1], row[: row.index(stop) + 1], refs[2][:2], refs[3][:6]]


def test_cancel_frees_the_row_at_once_and_others_are_unchanged(family):
    vlm, inputs, refs = family
    engine = _engine(vlm, "ssd-exit")
    ids = [engine.submit(Request(x, MAX_NEW)) for x in inputs[:3]]
    engine.step()
    assert (engine.live_rows, engine.queued) == (2, 1)
    assert engine.cancel(ids[0])
    assert (engine.live_rows, engine.queued) == (1, 1)
    assert not engine.cancel(ids[0])  # already gone
    while engine.has_work:
        engine.step()
    assert ids[0] not in engine.results
    assert [list(engine.results[i].tokens) for i in ids[1:]] == refs[1:3]


def test_requests_queue_in_arrival_order(family):
    vlm, inputs, _ = family
    engine = _engine(vlm, "plain", max_rows=1)
    ids = [engine.submit(Request(x, 2)) for x in inputs[:3]]
    order = []
    for event in engine.stream():
        if event.request_id not in order:
            order.append(event.request_id)
    assert order == ids


def test_a_request_that_cannot_fit_is_refused_naming_the_setting(family):
    vlm, inputs, _ = family
    engine = _engine(vlm, "ssd-exit", max_slots=20)
    with pytest.raises(ValueError, match="max_slots=20"):
        engine.submit(Request(inputs[0], MAX_NEW))
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        engine.submit(Request(inputs[0], 0))


def test_greedy_rows_are_exact_beside_sampled_ones(family):
    vlm, inputs, refs = family
    sampled = RowRule(do_sample=True, temperature=0.8, top_k=5, seed=3)
    requests = [Request(x, MAX_NEW, rule=sampled if i % 2 else RowRule()) for i, x in enumerate(inputs)]
    results, _ = _staggered(_engine(vlm, "ssd-exit", max_rows=3), requests)
    assert [list(r.tokens) for r in results[::2]] == refs[::2]


@pytest.mark.parametrize("mode", ["plain", "ssd-exit", "ssd-adaptive", "prompt-lookup"])
def test_a_seeded_request_gives_the_same_tokens_alone_and_under_changing_companions(family, mode):
    vlm, inputs, _ = family
    rule = RowRule(do_sample=True, temperature=1.0, top_k=8, seed=11)
    alone = _engine(vlm, mode, max_rows=4).run([Request(inputs[1], MAX_NEW, rule=rule)])[0].tokens
    companions = [Request(inputs[0], 5), Request(inputs[2], MAX_NEW, rule=RowRule(True, 0.7, 0, 1.0, seed=2)),
                  Request(inputs[1], MAX_NEW, rule=rule), Request(inputs[3], 3), Request(inputs[4], MAX_NEW)]
    results, _ = _staggered(_engine(vlm, mode, max_rows=3), companions)
    assert results[2].tokens == alone
    other = _engine(vlm, mode).run([Request(inputs[1], MAX_NEW, rule=RowRule(True, 1.0, 8, 1.0, seed=12))])[0]
    assert other.tokens != alone  # the seed matters: the tokens are samples, not the greedy ones


# -- speculative sampling through the engine: the exact law, with rows admitted mid-stream -------------------------

N = 1_200
ALPHA = 1e-3


def _joint_p_value(tokens, joint):
    """Chi-square p-value of the observed first-three-token triples against the exact joint law."""
    counts: dict = {}
    for row in tokens:
        counts[tuple(row[:3])] = counts.get(tuple(row[:3]), 0) + 1
    cells = sorted(joint, key=joint.get, reverse=True)
    big = [c for c in cells if N * joint[c] >= 5]
    observed = [counts.pop(c, 0) for c in big]
    expected = [N * joint[c] for c in big]
    observed.append(N - sum(observed))  # every other triple, those the model cannot produce included
    expected.append(max(N - sum(expected), 1e-9))
    return chisquare(observed, expected).pvalue


@pytest.fixture(scope="module")
def sampled():
    vlm, one = test_sampling._one("tiny-llava")
    return vlm, {"pixel_values": one["pixel_values"], "input_ids": one["input_ids"]}, \
        test_sampling._exact_joint(vlm, one)


def _sample_stream(vlm, one):
    config = test_sampling.CONFIG
    rules = [RowRule(True, config.temperature, config.top_k, config.top_p, seed=s) for s in range(N)]
    engine = ContinuousEngine(vlm, ShallowDrafter(vlm.decoder, DraftSpec(1), ()), 2, max_rows=64, max_slots=64)
    return [r.tokens for r in engine.run([Request(one, 3, rule=rule) for rule in rules])]


def test_engine_sampling_matches_the_full_models_distribution(sampled):
    vlm, one, joint = sampled
    assert _joint_p_value(_sample_stream(vlm, one), joint) > ALPHA


def test_engine_sampling_catches_a_rule_that_accepts_every_draft(sampled, monkeypatch):
    vlm, one, joint = sampled
    monkeypatch.setattr(SpeculativeSampling, "accepts", lambda self, u, p_x, q_x: torch.ones_like(p_x, dtype=bool))
    assert _joint_p_value(_sample_stream(vlm, one), joint) < ALPHA


# -- bfloat16 on CPU: SSD equals plain decoding of the same bf16 model, but where two tokens tie in bf16 rounding ----

BF16_ULP = 2.0**-7  # bfloat16 keeps 8 significant bits


def _first_difference(a, b) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)


def test_bfloat16_ssd_equals_plain_bf16_decoding_except_at_rounding_ties():
    vlm = chaotic_(tiny_vlm("tiny-llava")).to(torch.bfloat16)
    inputs = []
    for seed in range(12):
        batch = make_inputs("tiny-llava", [3 + seed % 6], seed=seed)
        inputs.append({"pixel_values": batch["pixel_values"].to(torch.bfloat16), "input_ids": batch["input_ids"]})
    requests = [Request(x, MAX_NEW) for x in inputs]
    plain = ContinuousEngine(vlm, None, max_rows=4).run(requests)
    drafter = ShallowDrafter(vlm.decoder, DraftSpec(1), vlm.eos_token_id)
    ssd = ContinuousEngine(vlm, drafter, 4, max_rows=4).run(requests)
    ties = 0
    for x, p, s in zip(inputs, plain, ssd, strict=True):
        at = _first_difference(p.tokens, s.tokens)
        if at is None:
            assert p.tokens == s.tokens
            continue
        # the full model's own top-2 gap where the two part: within a few bf16 roundings of the top logit
        ids = torch.cat([x["input_ids"], torch.tensor([p.tokens[:at]], dtype=torch.long)], 1)
        with torch.no_grad():
            logits = vlm.model(pixel_values=x["pixel_values"], input_ids=ids).logits[0, -1].float()
        top2 = logits.topk(2).values
        assert top2[0] - top2[1] <= 4 * BF16_ULP * top2[0].abs().clamp(min=1), (at, top2)
        ties += 1
    assert ties <= len(requests) // 2, ties  # ties are the exception, not the rule


@pytest.mark.slow
def test_compiled_layer_ranges_give_the_same_tokens():
    vlm = chaotic_(tiny_vlm("tiny-llava"))
    inputs = []
    for seed, length in PROMPTS["tiny-llava"]:
        batch = make_inputs("tiny-llava", [length], seed=seed)
        inputs.append({"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"]})
    requests = [Request(x, MAX_NEW) for x in inputs]
    for drafter in (None, ShallowDrafter(vlm.decoder, DraftSpec(1), vlm.eos_token_id)):
        eager = ContinuousEngine(vlm, drafter, 4, max_rows=2, max_slots=160).run(requests)
        compiled = ContinuousEngine(vlm, drafter, 4, max_rows=2, max_slots=160, compile=True).run(requests)
        assert [r.tokens for r in compiled] == [r.tokens for r in eager]


@pytest.mark.parametrize("mode", ["plain", "ssd-attention-imitation-dynamic"])
def test_requests_of_one_prompt_length_are_prefilled_together_and_still_exact(family, mode, monkeypatch):
    vlm, inputs, _ = family
    if vlm.family == "qwen2.5-vl":  # its rows carry different image sizes; build rows of one shape from the first
        same = [inputs[0]] * 3
    else:
        length = inputs[0]["input_ids"].shape[1] - image_prefix_length(_preset(vlm)) - 1
        same = [inputs[0]] + [_row(vlm, length, seed) for seed in (40, 41)]
    refs = [_reference(vlm, x) for x in same]
    encodes = []
    encode = vlm.encode
    monkeypatch.setattr(vlm, "encode", lambda **kw: encodes.append(kw["input_ids"].shape[0]) or encode(**kw))
    results = _engine(vlm, mode, max_rows=4).run([Request(x, MAX_NEW) for x in same])
    assert encodes == [3]  # one prefill pass for the three
    assert [list(r.tokens) for r in results] == refs


@pytest.mark.parametrize("mode", ["plain", "ssd-exit"])
def test_a_prefill_batch_admits_waiting_requests_only_once_that_many_rows_are_free(family, mode, monkeypatch):
    vlm, inputs, _ = family
    if vlm.family == "qwen2.5-vl":
        same = [inputs[0]] * 3
    else:
        length = inputs[0]["input_ids"].shape[1] - image_prefix_length(_preset(vlm)) - 1
        same = [inputs[0]] + [_row(vlm, length, seed) for seed in (40, 41)]
    refs = [_reference(vlm, x) for x in same]
    engine = _engine(vlm, mode, max_rows=3)
    engine.prefill_batch = 3
    encodes = []
    encode = vlm.encode
    monkeypatch.setattr(vlm, "encode", lambda **kw: encodes.append(kw["input_ids"].shape[0]) or encode(**kw))
    results = engine.run([Request(x, MAX_NEW - i) for i, x in enumerate(same * 2)])
    assert encodes == [3, 3]  # the second three wait until all three rows are free, then share one pass
    assert [list(r.tokens) for r in results] == [ref[: MAX_NEW - i] for i, ref in enumerate(refs * 2)]
    with pytest.raises(ValueError, match=r"prefill_batch must be in \[1, max_rows\] = \[1, 3\], got 4"):
        ContinuousEngine(vlm, None, max_rows=3, prefill_batch=4)


def test_the_policy_hears_of_the_prefill_passes_that_refill_the_rows_its_cycles_free(family):
    vlm, inputs, refs = family
    policy = test_draft_policy._Recorder()
    drafter = ShallowDrafter(vlm.decoder, DraftSpec(1), vlm.eos_token_id)
    engine = ContinuousEngine(vlm, drafter, policy, max_rows=2, max_slots=160)
    results = engine.run([Request(x, MAX_NEW) for x in inputs])
    assert [list(r.tokens) for r in results] == refs
    passes = [p for report in policy.reports for p in report.admissions]
    # the first pass fills idle rows and is no cycle's doing; the three requests that waited for a row are heard of
    assert policy.reports[0].admissions == () and sum(n for n, _ in passes) == 3
    assert all(n >= 1 and seconds > 0 for n, seconds in passes)
    engine.run([Request(inputs[0], 2)])  # arriving at an idle engine: no cycle's doing either
    assert all(report.admissions == () for report in policy.reports[-2:])


def test_the_warm_up_runs_one_request_alone_then_a_stream_then_one_alone_and_keeps_nothing(family, monkeypatch):
    vlm, inputs, refs = family
    engine = _engine(vlm, "ssd-adaptive", max_rows=2)
    policy = engine.policy
    groups = []
    run = ContinuousEngine.run
    monkeypatch.setattr(ContinuousEngine, "run",
                        lambda self, rs: groups.append([r.max_new_tokens for r in rs]) or run(self, rs))
    assert warm_up_count(2) == 4 and warm_up_count(16) == 1 + WARM_UP_ROWS
    engine.warm_up([Request(x, MAX_NEW) for x in inputs[:4]])
    # the stream has more requests than rows, of budgets that end them at different cycles: one is admitted while
    # another decodes
    assert groups == [[MAX_NEW], [MAX_NEW - 3, MAX_NEW - 6, MAX_NEW - 9], [MAX_NEW]]
    assert not engine.has_work and not engine.results
    assert policy.prices(2) != policy.prices(None)  # the warm-up's cycles were timed (the compiler's, if compiled)
    assert engine.policy.prices(2) == engine.policy.prices(None)  # a fresh policy: nothing measured, FLOP prices
    assert (engine.policy.max_d, engine.policy.prior) == (policy.max_d, policy.prior)
    with pytest.raises(ValueError, match=r"warm_up takes warm_up_count\(2\) = 4 requests, got 2"):
        engine.warm_up([Request(x, MAX_NEW) for x in inputs[:2]])
    assert [list(r.tokens) for r in engine.run([Request(x, MAX_NEW) for x in inputs])] == refs
