"""The server's parts without a server: token rules from a request and a generation config, the cancellation
board, and the per-worker gauges."""

import uuid

import pytest
import torch
from transformers import GenerationConfig

from lightning_ssd.decoding.continuous import ContinuousEngine
from lightning_ssd.decoding.row_rules import GREEDY, RowRule
from lightning_ssd.serving.api import ServeConfig, SSDChatAPI
from lightning_ssd.serving.cancel import SIZE, CancelBoard
from lightning_ssd.serving.limits import Limits
from lightning_ssd.serving.metrics import EngineStats, ServerMetrics
from lightning_ssd.serving.protocol import Sampling


@pytest.fixture
def api():
    return SSDChatAPI(ServeConfig(backbone="tiny-llava"))


def test_temperature_zero_is_greedy_and_absent_follows_the_generation_config(api):
    api.generation_config = GenerationConfig(do_sample=True, temperature=0.7, top_k=5, top_p=0.9)
    assert api.row_rule(Sampling(temperature=0.0, seed=1)) is GREEDY
    assert api.row_rule(Sampling(seed=3)) == RowRule(True, 0.7, 5, 0.9, 3)
    assert api.row_rule(Sampling(temperature=1.2, top_k=0, seed=4)) == RowRule(True, 1.2, 0, 0.9, 4)
    api.generation_config = GenerationConfig(do_sample=False)
    assert api.row_rule(Sampling(seed=3)) is GREEDY
    rule = api.row_rule(Sampling(temperature=0.5))
    assert (rule.do_sample, rule.temperature, rule.top_k, rule.top_p) == (True, 0.5, 0, 1.0)
    assert rule.seed != api.row_rule(Sampling(temperature=0.5)).seed  # no seed: each request draws one


def test_the_cancellation_board_gives_each_reader_what_was_posted_since_its_last_look():
    board = CancelBoard()
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for uid in ids[:3]:
        board.post(uid)
    first, cursor = board.read(0)
    assert first == ids[:3]
    for uid in ids[3:]:
        board.post(uid)
    assert board.read(cursor) == (ids[3:], 5)
    assert board.read(0)[0] == ids  # another reader, from the start
    for _ in range(SIZE):
        board.post(ids[0])
    late, _ = board.read(5)
    assert len(late) == SIZE  # a reader that fell behind gets the newest SIZE


def test_gauges_sum_the_workers_rows():
    stats = EngineStats(workers=2)
    stats.bind(0)
    stats.set("live_rows", 2)
    stats.add("generated", 10)
    stats.bind(1)
    stats.set("live_rows", 1)
    stats.add("generated", 5)
    snapshot = stats.snapshot()
    assert (snapshot["live_rows"], snapshot["generated"]) == (3, 15)
    metrics = ServerMetrics(stats)
    metrics.in_flight = 5
    text = metrics.exposition().decode()
    assert "ssd_live_rows 3.0" in text and "ssd_queued_requests 2.0" in text
    with pytest.raises(ValueError):
        stats.bind(2)


def test_compile_warms_up_at_start_up_and_leaves_the_engine_as_it_found_it(monkeypatch):
    compiled, runs, policies = [], [], []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: compiled.append(options) or fn)
    run = ContinuousEngine.run

    def spy(engine, requests):
        runs.append(len(requests))
        policies.append(engine.policy)
        return run(engine, requests)

    monkeypatch.setattr(ContinuousEngine, "run", spy)
    api = SSDChatAPI(ServeConfig(backbone="tiny-llava", n=1, draft="adaptive", compile=True,
                                 limits=Limits(max_live_rows=4)))
    api.setup("cpu")
    assert compiled == [{"dynamic": True}]
    assert runs == [1, 5, 1]  # alone (a shape of its own to the compiler), more than the rows, alone on a cache
    assert not api.engine.has_work and not api.engine.results
    assert api.engine.policy is not policies[0]  # the warm-up timed the compiler: the policy starts afresh
    plain = SSDChatAPI(ServeConfig(backbone="tiny-llava", n=1, draft="adaptive"))
    plain.setup("cpu")
    assert runs == [1, 5, 1]  # no warm-up without --compile


@pytest.mark.slow
def test_after_the_compile_warm_up_no_request_recompiles():
    import numpy as np
    from PIL import Image

    from lightning_ssd.backbones.vlm import vision_inputs
    from lightning_ssd.data.readers.base import Record, Sample
    from lightning_ssd.decoding.continuous import Request

    api = SSDChatAPI(ServeConfig(backbone="tiny-llava", n=1, compile=True, limits=Limits(max_live_rows=4)))
    api.setup("cpu")
    rng = np.random.default_rng(0)

    def request(i: int) -> Request:
        image = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        task, query = ("caption", "") if i % 2 else ("instruct", "what is it?" + " and where?" * i)
        batch = api.collate[task]([Sample(image, Record(image=0, sample_id=0, query=query))])
        return Request({"input_ids": batch["prompt_input_ids"], **vision_inputs(batch)}, 3 + 5 * i)

    with torch._dynamo.config.patch(error_on_recompile=True):
        for group in ([0], [1, 2, 3], [4, 5, 6, 7, 8, 9], [10]):
            api.engine.run([request(i) for i in group])
