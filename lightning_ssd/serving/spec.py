"""The HTTP side: LitServe's OpenAI spec, extended to check requests before they are queued and to stream cycles.

`ChatSpec` subclasses LitServe's `OpenAISpec` and keeps its wire format (the `chat.completion` and
`chat.completion.chunk` objects, server-sent events ending in `data: [DONE]`), and adds what the stock spec lacks:

- every check of `protocol.py` runs here, in the HTTP process, before a request is queued: a refused request
  gets its 4xx at once and never reaches the model;
- a full server (`rows + queue` requests in flight) answers 429 with `Retry-After`;
- errors found by the worker (a prompt too long) come back with their status even when streaming, because a
  stream starts only once the request's first message (its first tokens or its error) has arrived;
- a client that disconnects, streaming or not, has its request cancelled in the engine (its row is freed at once);
- responses carry `usage` and an `ssd` extension (tau, alpha, cycles); `/v1/models` and `/metrics` are served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from litserve.specs.openai import OpenAISpec
from litserve.utils import LitAPIStatus, ResponseBufferItem

from lightning_ssd.serving.cancel import CancelBoard
from lightning_ssd.serving.limits import Limits
from lightning_ssd.serving.metrics import ServerMetrics
from lightning_ssd.serving.protocol import RequestError, parse_chat_request, parse_json

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 1
_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there


class ChatSpec(OpenAISpec):
    """OpenAI-compatible chat completions with SSD statistics, request checks and cancellation on disconnect.

    Args:
        limits: what a request may ask for (`Limits`).
        model_name: the model id listed at `/v1/models` and echoed in responses.
        metrics: request counters and the worker's shared figures, exposed at `/metrics`.
    """

    def __init__(self, limits: Limits, model_name: str, metrics: ServerMetrics, board: CancelBoard) -> None:
        super().__init__()
        self.limits, self.model_name, self.metrics, self.board = limits, model_name, metrics, board

    def pre_setup(self, lit_api) -> None:
        self.add_endpoint(self.api_path, self.chat_completion, ["POST"])
        self.add_endpoint("/v1/models", self.models, ["GET"])
        self.add_endpoint("/metrics", self.prometheus, ["GET"])

    async def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0,
                                            "owned_by": "lightning_ssd"}]}

    async def prometheus(self) -> Response:
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4")

    # -- one request -------------------------------------------------------------------------------------------------

    async def chat_completion(self, request: Request) -> Response:
        try:
            raw = await _read_body(request, self.limits.max_body_bytes)
        except RequestError as exc:
            return self._error(exc)
        if self.metrics.in_flight >= self.limits.max_in_flight:
            return self._error(RequestError(429, None, f"the server is full ({self.limits.max_in_flight} requests "
                                                       f"decoding or queued); retry after {RETRY_AFTER_S} s",
                                            code="rate_limit_exceeded"))
        self.metrics.in_flight += 1  # taken before the await below, so that concurrent arrivals see it
        try:
            chat = await asyncio.to_thread(_parse, raw, self.limits)
        except RequestError as exc:
            self.metrics.in_flight -= 1
            return self._error(exc)
        except Exception as exc:  # a check that failed on input nobody foresaw: the request only
            self.metrics.in_flight -= 1
            logger.exception("a request could not be read")
            return self._error(RequestError(500, None, f"the request could not be read ({type(exc).__name__})",
                                            code="server_error"))
        uid = str(uuid.uuid4())
        item = ResponseBufferItem(event=asyncio.Event(), response_queue=deque())
        self.response_buffer[uid] = item
        self.request_queue.put((self.response_queue_id, uid, time.monotonic(), chat))
        messages = _messages(item)
        done = False
        try:
            client = _Client(request)
            first = await self._next(messages, client)
            if first is None:  # the client left before anything came back
                return Response(status_code=499)
            data, status = first
            if status == LitAPIStatus.ERROR:
                done = True
                return self._error(RequestError(data["status"], data["param"], data["message"]), uid)
            if chat.stream:
                done = True  # the stream owns the request from here
                return StreamingResponse(self._stream(uid, first, messages), media_type="text/event-stream")
            response = await self._complete(first, messages, client, uid)
            done = True
            return response
        finally:
            if not done:
                self._cancel(uid)

    async def _complete(self, first, messages, client: _Client, uid: str) -> Response:
        parts, message = [], first
        while message is not None:
            data, status = message
            if status == LitAPIStatus.ERROR:
                return self._error(RequestError(data["status"], data["param"], data["message"]), uid)
            parts.append(data["delta"])
            if status == LitAPIStatus.FINISH_STREAMING:
                self._finish(uid, 200)
                return JSONResponse({
                    "id": f"chatcmpl-{uid}", "object": "chat.completion", "created": int(time.time()),
                    "model": self.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                                 "finish_reason": data["finish_reason"], "logprobs": None,
                                 **_token_ids(data)}],
                    "usage": data["usage"], "ssd": data["ssd"]})
            message = await self._next(messages, client)
        self._cancel(uid)
        return Response(status_code=499)

    async def _stream(self, uid: str, first, messages) -> AsyncIterator[str]:
        chunk = {"id": f"chatcmpl-{uid}", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": self.model_name}
        finished = False
        try:
            yield _sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})
            message = first
            while True:
                data, status = message
                if status == LitAPIStatus.ERROR:
                    finished = True
                    self._finish(uid, data["status"])
                    yield _sse(RequestError(data["status"], data["param"], data["message"]).body())
                    return
                if data["delta"]:
                    yield _sse({**chunk, "choices": [{"index": 0, "delta": {"content": data["delta"]},
                                                      "finish_reason": None}]})
                if status == LitAPIStatus.FINISH_STREAMING:
                    finished = True
                    self._finish(uid, 200)
                    yield _sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": data["finish_reason"],
                                                      **_token_ids(data)}],
                                "usage": data["usage"], "ssd": data["ssd"]})
                    yield "data: [DONE]\n\n"
                    return
                message = await anext(messages)
        finally:
            if not finished:  # the client went away (Starlette cancels the stream): free the row now
                self._cancel(uid)

    async def _next(self, messages, client: _Client):
        """The request's next message, or None once its client has disconnected."""
        pending = asyncio.ensure_future(anext(messages))
        while True:
            done, _ = await asyncio.wait({pending}, timeout=_POLL_S)
            if await client.gone():
                pending.cancel()
                return None
            if done:
                return pending.result()

    # -- bookkeeping -------------------------------------------------------------------------------------------------

    def _release(self, uid: str) -> bool:
        """Forgets a request the server held; False if it was already released."""
        if self.response_buffer.pop(uid, None) is None:
            return False
        self.metrics.in_flight -= 1
        return True

    def _finish(self, uid: str, status: int) -> None:
        if self._release(uid):
            self.metrics.requests[status] += 1

    def _cancel(self, uid: str) -> None:
        if uid in self.response_buffer:
            self.board.post(uid)
            self._finish(uid, 499)

    def _error(self, exc: RequestError, uid: str | None = None) -> JSONResponse:
        if uid is not None:
            self._release(uid)
        self.metrics.requests[exc.status] += 1
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status in (429, 503) else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class _Client:
    """Whether a request's client is still connected, asked at most every `_POLL_S` seconds."""

    def __init__(self, request: Request) -> None:
        self.request, self.checked = request, time.monotonic()

    async def gone(self) -> bool:
        if time.monotonic() - self.checked < _POLL_S:
            return False
        self.checked = time.monotonic()
        return await self.request.is_disconnected()


async def _messages(item: ResponseBufferItem) -> AsyncIterator[tuple[dict, LitAPIStatus]]:
    """The (message, status) pairs the worker sends for one request, as they arrive."""
    while True:
        await item.event.wait()
        while item.response_queue:
            data, status = item.response_queue.popleft()
            yield data, status
        item.event.clear()


def _parse(raw: bytes, limits: Limits):
    return parse_chat_request(parse_json(raw), limits)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, None, f"the request body is {declared} bytes; at most {limit} (--max-body-mb)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, None, f"the request body is over {limit} bytes (--max-body-mb)")
    return bytes(body)


def _token_ids(data: dict) -> dict:
    return {} if data.get("token_ids") is None else {"token_ids": data["token_ids"]}


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"
