"""The model side of the server: a LitAPI that owns a `ContinuousEngine`, and the LitServe loop that drives it.

LitServe's stock loops cannot drive this engine: its `ContinuousBatchingLoop` asks `predict` for ONE token per
sequence per step and adds requests from a second thread while steps run, and no stock loop hears of a client that
went away. `EngineLoop` is a custom `LitLoop` that reads like a scheduler, one tick per call:

    1. take what arrived: cancellations (`engine.cancel`, from the `CancelBoard`), then new requests from
       LitServe's queue while a row is free (prompt built, `engine.submit`); the rest wait there for any worker;
    2. one `engine.step()`: admit waiting requests into free rows, one speculative cycle of every live row;
    3. stream what each request accepted (several tokens per cycle), and finish those that ended;
    publishing the gauges (live rows, queue, tokens/s) after steps 1 and 2.

Its hooks follow LitServe's continuous-batching contract: `SSDChatAPI.setup` loads the model and builds the engine,
`decode_request` turns a checked request into an engine `Request`, `add_request` submits it, `step` runs one engine
step, `encode_response` turns a request's new tokens into text. Each inference worker (LitServe's devices x
workers per device) owns one engine.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from queue import Empty
from typing import Any

import litserve as ls
from fastapi import HTTPException, Request
from litserve.loops.base import _SENTINEL_VALUE, LitLoop
from litserve.utils import LitAPIStatus, LoopResponseType

from lightning_ssd.serving.cancel import CancelBoard
from lightning_ssd.serving.limits import Limits
from lightning_ssd.serving.metrics import EngineStats, ServerMetrics
from lightning_ssd.serving.protocol import ChatRequest, RequestError, Sampling
from lightning_ssd.serving.spec import ChatSpec

logger = logging.getLogger(__name__)
WARM_UP_TOKENS = 24  # the warm-up requests' budget (the engine lowers it for each next one): a few cycles at any d
CANCEL_MEMORY = 4096  # cancelled requests a worker remembers before it takes them from LitServe's queue


@dataclass(frozen=True)
class ServeConfig:
    """What the server decodes with.

    Attributes:
        backbone: preset name or checkpoint folder.
        draft_head: imitation checkpoint or draft folder (its n is used); None: the plain early exit at `n`.
        n: the draft exit layer without a head (default L // 4).
        mode: "ssd" or "greedy" (the full model alone, one token per row per step: the baseline).
        draft: d per cycle, "dynamic" (eq. 5) or "adaptive" (from the live rows' acceptance and the measured cost
            of a cycle).
        prefill_batch: the engine's `prefill_batch`: rows that must be free before queued requests are admitted
            while others decode, so that they share one prefill pass.
        compile: run the engine's layer ranges through `torch.compile`, compiled at start-up by a warm-up
            (`SSDChatAPI.warm_up`) before the worker takes requests.
        limits: request limits and engine sizes.
        model_name: the id `/v1/models` lists and responses carry.
        api_key: clients must send it (`Authorization: Bearer KEY` or `X-API-Key`); None: no key.
        threads: torch CPU threads in each worker (None: the default rule of `lightning_ssd.threads`).
        workers: inference workers (LitServe's devices x workers per device), each with its own model and engine.
        address: where the server listens, for the start-up line.
    """

    backbone: str
    draft_head: str | None = None
    n: int | None = None
    mode: str = "ssd"
    draft: int | str = 6
    prefill_batch: int = 1
    compile: bool = False
    limits: Limits = field(default_factory=Limits)
    model_name: str = "lightning-ssd"
    api_key: str | None = None
    threads: int | None = None
    workers: int = 1
    address: str = ""


@dataclass
class _Stream:
    """One request in the worker: its engine id, where its answers go, and what was sent so far."""

    uid: str
    queue_id: int
    engine_id: int
    prompt_tokens: int
    stops: tuple[str, ...]
    return_token_ids: bool = False
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    cycles: int = 0  # verification cycles after the prefill's token
    cycle_tokens: int = 0


class SSDChatAPI(ls.LitAPI):
    """Chat completions over one VLM, decoded by SSD (or the full model alone) with continuous batching.

    Args:
        config: the model, the draft and the limits (`ServeConfig`).
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.stats = EngineStats(config.workers)
        self.metrics = ServerMetrics(self.stats)
        self.board = CancelBoard()
        super().__init__(max_batch_size=config.limits.max_live_rows, stream=True, loop=EngineLoop(),
                         spec=ChatSpec(config.limits, config.model_name, self.metrics, self.board))

    # -- HTTP process ------------------------------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        """LitServe's auth hook (a FastAPI dependency on every route): the key guards /v1/*; /health and /metrics
        stay open for load balancers and scrapers."""
        key = self.config.api_key
        if not key or not request.url.path.startswith("/v1/"):
            return
        sent = request.headers.get("x-api-key") or ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            sent = sent or token
        if not hmac.compare_digest(sent.encode(), key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>' (the openai "
                                     "client's api_key) or 'X-API-Key: <key>'")

    # -- inference worker --------------------------------------------------------------------------------------------

    def setup(self, device: str) -> None:
        import torch

        from lightning_ssd.backbones import load_backbone, load_processor
        from lightning_ssd.data.collate import VLCollator
        from lightning_ssd.decoding.continuous import ContinuousEngine
        from lightning_ssd.decoding.cost import measure_cost_model
        from lightning_ssd.decoding.draft_policy import draft_policy
        from lightning_ssd.decoding.drafters import ShallowDrafter
        from lightning_ssd.decoding.spec import DraftSpec
        from lightning_ssd.models.checkpoint import load_draft_spec
        from lightning_ssd.threads import set_threads

        cfg = self.config
        worker = int(os.environ.get("LITSERVE_WORKER_ID", "0"))  # set by LitServe before setup
        self.stats.bind(worker)
        self.cursor = 0  # how far this worker has read the cancellation board
        self.dropped: OrderedDict[str, None] = OrderedDict()  # cancelled before this worker took them
        set_threads(cfg.threads)
        self.vlm = load_backbone(cfg.backbone).to(torch.device(device))
        check_family(self.vlm.family, cfg.backbone)
        processor = load_processor(cfg.backbone)
        self.tokenizer = processor.tokenizer
        self.collate = {task: VLCollator(processor, self.vlm.family, task) for task in ("caption", "instruct")}
        drafter, policy, cost, L = None, 1, None, self.vlm.decoder.num_layers
        if cfg.mode == "ssd":
            if cfg.draft_head:
                spec = load_draft_spec(cfg.draft_head, self.vlm, draft=cfg.draft, prefix="--")
                if spec.imitation is not None:
                    spec = replace(spec, imitation=spec.imitation.to(device))
            else:
                spec = DraftSpec(cfg.n or max(1, L // 4), None, cfg.draft, prefix="--").check(self.vlm.decoder)
            drafter = ShallowDrafter(self.vlm.decoder, spec, self.vlm.eos_token_id)
            cost = measure_cost_model(self.vlm.decoder, spec.n, spec.imitation)[0] if cfg.draft == "adaptive" else None
            policy = draft_policy(cfg.draft, cost)
        room = 1 + (policy.max_d if drafter is not None else 0)
        limits = cfg.limits
        self.engine = ContinuousEngine(self.vlm, drafter, policy, max_rows=limits.max_live_rows,
                                       max_slots=limits.max_prompt_tokens + limits.max_tokens_cap + room,
                                       prefill_batch=cfg.prefill_batch, compile=cfg.compile)
        self.generation_config = self.vlm.model.generation_config
        text_config = getattr(self.vlm.model.config, "text_config", self.vlm.model.config)
        self.max_positions: int | None = getattr(text_config, "max_position_embeddings", None)
        self.streams: dict[int, _Stream] = {}  # by engine id
        self.engine_ids: dict[str, int] = {}  # by LitServe uid
        if cfg.compile:
            seconds = self.warm_up()
            print(f"lightning_ssd serve: worker {worker}: compiled in {seconds:.0f} s", file=sys.stderr, flush=True)
        where = f"SSD, n = {drafter.layer} of L = {L}, d = {cfg.draft}" if drafter else f"the full model, L = {L}"
        print(f"lightning_ssd serve: worker {worker}: {cfg.model_name} ({where}) on {device}, {limits.max_live_rows} "
              f"rows; listening on {cfg.address}", file=sys.stderr, flush=True)

    def warm_up(self) -> float:
        """Compiles the engine's steps before the first client waits on them (`ContinuousEngine.warm_up`, on plain
        images of different colours); returns the seconds it took."""
        from lightning_ssd.decoding.continuous import warm_up_count

        return self.engine.warm_up([self._warm_up_request(i)
                                    for i in range(warm_up_count(self.config.limits.max_live_rows))])

    def _warm_up_request(self, i: int):
        from PIL import Image

        from lightning_ssd.data.readers.base import Record
        from lightning_ssd.decoding.continuous import Request as EngineRequest

        colour = (37 * i % 256, 255 - 53 * i % 256, 91 * i % 256)
        inputs = self._engine_inputs("caption", Image.new("RGB", (64, 64), colour), Record(image=0, sample_id=0))
        return EngineRequest(inputs, min(self.config.limits.max_tokens_cap, WARM_UP_TOKENS))

    def _engine_inputs(self, task: str, image, record) -> dict[str, Any]:
        """One prompt and image as the engine takes them: the backbone's template and processor, unpadded."""
        from lightning_ssd.backbones.vlm import vision_inputs
        from lightning_ssd.data.readers.base import Sample

        batch = self.collate[task]([Sample(image, record)])
        return {"input_ids": batch["prompt_input_ids"], **vision_inputs(batch)}

    def decode_request(self, request: ChatRequest) -> Any:
        """The engine `Request` of a checked chat request: the backbone's template, its processor, the token rule."""
        from lightning_ssd.data.readers.base import Record
        from lightning_ssd.decoding.continuous import Request as EngineRequest

        task = "instruct" if request.query or request.history else "caption"
        record = Record(image=0, sample_id=0, query=request.query or "", history=request.history)
        inputs = self._engine_inputs(task, request.image, record)
        length, limits = inputs["input_ids"].shape[1], self.config.limits
        if length > limits.max_prompt_tokens:
            raise RequestError(400, "messages", f"the prompt is {length} tokens (image placeholders included); this "
                                                f"server takes at most {limits.max_prompt_tokens}")
        room = limits.max_tokens_cap if self.max_positions is None else self.max_positions - length
        if room < 1:
            raise RequestError(400, "messages", f"the prompt is {length} tokens: it fills the model's "
                                                f"{self.max_positions} positions")
        if request.max_tokens is not None and request.max_tokens > room:
            raise RequestError(400, "max_tokens", f"the prompt ({length} tokens) and max_tokens "
                                                  f"({request.max_tokens}) exceed the model's {self.max_positions} "
                                                  f"positions; ask for at most {room} tokens")
        budget = request.max_tokens or min(limits.max_tokens_cap, room)
        return EngineRequest(inputs, budget, rule=self.row_rule(request.sampling))

    def row_rule(self, sampling: Sampling):
        """Greedy for temperature 0; the checkpoint's generation config for what the request leaves unset."""
        from lightning_ssd.decoding.row_rules import GREEDY, RowRule

        config = self.generation_config
        if sampling.temperature is None:
            do_sample, temperature = bool(config.do_sample), config.temperature or 1.0
        else:
            do_sample, temperature = sampling.temperature > 0, sampling.temperature
        if not do_sample:
            return GREEDY
        top_k = sampling.top_k if sampling.top_k is not None else (config.top_k or 0)
        top_p = sampling.top_p if sampling.top_p is not None else (config.top_p or 1.0)
        seed = sampling.seed if sampling.seed is not None else secrets.randbits(62)
        try:
            return RowRule(True, temperature, top_k, top_p, seed)
        except ValueError as exc:
            raise RequestError(400, "temperature", f"these sampling settings cannot be used: {exc}") from exc

    def add_request(self, uid: str, queue_id: int, request: ChatRequest) -> None:
        engine_request = self.decode_request(request)
        try:
            engine_id = self.engine.submit(engine_request)
        except ValueError as exc:
            raise RequestError(400, "max_tokens", str(exc)) from exc
        self.streams[engine_id] = _Stream(uid, queue_id, engine_id, int(engine_request.inputs["input_ids"].shape[1]),
                                          request.stop, request.return_token_ids)
        self.engine_ids[uid] = engine_id

    def cancel(self, uid: str) -> bool:
        """Frees the request's row (or drops it from the engine's queue); False if this worker does not hold it."""
        engine_id = self.engine_ids.pop(uid, None)
        if engine_id is None:
            return False
        self.engine.cancel(engine_id)
        del self.streams[engine_id]
        return True

    def take_cancellations(self) -> None:
        """Cancels what the HTTP process posted since the last look; remembers the requests this worker may take
        from LitServe's queue later, to drop them then."""
        uids, self.cursor = self.board.read(self.cursor)
        for uid in uids:
            if not self.cancel(uid):
                self.dropped[uid] = None
                if len(self.dropped) > CANCEL_MEMORY:
                    self.dropped.popitem(last=False)

    def has_active_requests(self) -> bool:
        return self.engine.has_work

    def has_capacity(self) -> bool:
        """A free row no queued request will take: what is left stays in LitServe's queue, for any worker."""
        return self.engine.live_rows + self.engine.queued < self.engine.state.max_rows

    def step(self) -> list:
        """One engine step; (stream, event) for every request it advanced."""
        events = self.engine.step()
        return [(self.streams[e.request_id], e) for e in events if e.request_id in self.streams]

    def encode_response(self, stream: _Stream, event) -> tuple[dict | None, bool]:
        """The message for a request's new tokens: a text delta, or its final message; (None, False) if nothing new.

        Text is decoded from all the request's tokens so far, as offline `generate` decodes it (special tokens
        skipped, surrounding spaces stripped); while it runs, trailing spaces, an incomplete character and the last
        characters that could begin a stop string are held back.
        """
        if stream.tokens:
            stream.cycles += 1
            stream.cycle_tokens += len(event.tokens)
        stream.tokens += event.tokens
        self.stats.record_tokens(len(event.tokens))
        text = self.tokenizer.decode(stream.tokens, skip_special_tokens=True).lstrip()
        cut = min((i for i in (text.find(s) for s in stream.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.engine.cancel(stream.engine_id)
            return self._final(stream, text[:cut].rstrip(), "stop"), True
        if event.finished:
            return self._final(stream, text.strip(), event.finish_reason), True
        safe = text.rstrip()
        hold = max((len(s) for s in stream.stops), default=1) - 1
        safe = safe[: len(safe) - hold].removesuffix("\ufffd")
        if not safe.startswith(stream.sent) or len(safe) == len(stream.sent):
            return None, False
        delta, stream.sent = safe[len(stream.sent):], safe
        return {"delta": delta}, False

    def _final(self, stream: _Stream, text: str, reason: str) -> dict:
        from lightning_ssd.decoding.result import GenerationResult

        del self.streams[stream.engine_id]
        del self.engine_ids[stream.uid]
        result = self.engine.results.pop(stream.engine_id, None)
        ssd: dict[str, Any] = {"mode": self.config.mode, "cycles": stream.cycles, "tau": None, "alpha": None}
        if self.config.mode == "ssd" and stream.cycles:
            ssd["tau"] = stream.cycle_tokens / stream.cycles
            self.stats.add("spec_cycles", stream.cycles)
            self.stats.add("spec_emitted", stream.cycle_tokens)
        if self.config.mode == "ssd" and result is not None:
            merged = GenerationResult((result,))
            judged = sum(min(c.accepted + 1, c.drafted) for c in result.cycles if c.drafted)
            ssd.update(drafted=merged.drafted, accepted=sum(c.accepted for c in result.cycles))
            ssd["alpha"] = ssd["accepted"] / judged if judged else None
            self.stats.add("accepted", ssd["accepted"])
            self.stats.add("judged", judged)
        self.stats.add("cycles", stream.cycles)
        if not text.startswith(stream.sent):
            logger.warning("request %s: the final text does not extend what was streamed", stream.uid)
        usage = {"prompt_tokens": stream.prompt_tokens, "completion_tokens": len(stream.tokens),
                 "total_tokens": stream.prompt_tokens + len(stream.tokens)}
        delta = text[len(stream.sent):] if text.startswith(stream.sent) else ""
        return {"delta": delta, "text": text, "finish_reason": "length" if reason == "length" else "stop",
                "usage": usage, "ssd": ssd, "token_ids": list(stream.tokens) if stream.return_token_ids else None}


def check_family(family: str, backbone: str) -> None:
    if family == "blip2-t5":
        raise ValueError(f"{backbone} is a BLIP-2 Flan-T5 (encoder-decoder) backbone, which this server does not "
                         "serve yet; serve a decoder-only family (BLIP-2 OPT, LLaVA, LLaVA-NeXT, Qwen2.5-VL), or use "
                         "`python -m lightning_ssd generate` offline")


class EngineLoop(LitLoop):
    """LitServe's worker loop for `SSDChatAPI`: requests and cancellations in, one engine step, messages out."""

    def run(self, lit_api: SSDChatAPI, device, worker_id, request_queue, transport, workers_setup_status,
            callback_runner) -> None:
        # 1. cancellations, then new requests while a row is free (wait for one only when there is nothing to decode)
        lit_api.take_cancellations()
        self._take(lit_api, request_queue, transport, block=not lit_api.has_active_requests())
        self._publish(lit_api)
        # 2. one engine step  3. stream what it accepted, finish what ended
        if lit_api.has_active_requests():
            try:
                advanced = lit_api.step()
            except Exception as exc:  # a bug or an out-of-memory must not leave clients waiting forever
                logger.exception("engine step failed")
                self._fail_all(lit_api, transport, exc)
                return
            self._publish(lit_api)  # before the messages: a client that reads its tokens sees its row counted
            for stream, event in advanced:
                message, final = lit_api.encode_response(stream, event)
                if message is not None:
                    status = LitAPIStatus.FINISH_STREAMING if final else LitAPIStatus.OK
                    self.put_response(transport, stream.queue_id, stream.uid, message, status,
                                      LoopResponseType.STREAMING)

    @staticmethod
    def _publish(lit_api: SSDChatAPI) -> None:
        """The gauges; tokens/s decays to 0 when idle (the wait for requests returns every second)."""
        lit_api.stats.record_tokens(0)
        lit_api.stats.set("live_rows", lit_api.engine.live_rows)
        lit_api.stats.set("queued", lit_api.engine.queued)

    def _take(self, lit_api: SSDChatAPI, request_queue, transport, block: bool) -> None:
        while lit_api.has_capacity():
            try:
                item = request_queue.get(timeout=1.0) if block else request_queue.get_nowait()
            except Empty:
                return
            block = False
            if item == _SENTINEL_VALUE:
                raise SystemExit(0)
            queue_id, uid, _, payload = item
            lit_api.take_cancellations()  # a request may have been cancelled while it waited in LitServe's queue
            if uid in lit_api.dropped:
                del lit_api.dropped[uid]
                continue
            try:
                lit_api.add_request(uid, queue_id, payload)
            except RequestError as exc:
                self._error(transport, queue_id, uid, exc.status, exc.param, exc.message)
            except Exception as exc:
                logger.exception("request %s could not be prepared", uid)
                self._error(transport, queue_id, uid, 500, None, f"the request could not be prepared: {exc}")

    def _error(self, transport, queue_id: int, uid: str, status: int, param: str | None, message: str) -> None:
        self.put_response(transport, queue_id, uid, {"status": status, "param": param, "message": message},
                          LitAPIStatus.ERROR, LoopResponseType.STREAMING)

    def _fail_all(self, lit_api: SSDChatAPI, transport, exc: Exception) -> None:
        for stream in list(lit_api.streams.values()):
            self._error(transport, stream.queue_id, stream.uid, 500, None, f"decoding failed: {exc}")
            lit_api.cancel(stream.uid)
        time.sleep(0.01)
