"""Reading an OpenAI chat-completions request: every check that can refuse it, before it reaches the model.

`parse_chat_request(body, limits)` returns a `ChatRequest` or raises `RequestError` (an HTTP status, the field at
fault as OpenAI's `param`, and a message saying what to do). It runs in the HTTP process, so a refused request never
costs the model any time and never disturbs the requests being decoded.

Images come as `image_url` content parts: a base64 `data:` URL, or a local path (`file://` or plain) that must
resolve inside `--image-root` (symlinks and `..` are resolved first). Remote `http(s)` URLs are refused: the server
makes no outbound requests, so a request cannot make it reach other hosts (server-side request forgery).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from PIL import Image

from lightning_ssd.serving.limits import Limits

# Fields OpenAI's API defines that this server cannot honour; refused when set to anything but their neutral value.
_NEUTRAL = {"n": (1, None), "logprobs": (False, None), "top_logprobs": (None, 0), "presence_penalty": (0, 0.0, None),
            "frequency_penalty": (0, 0.0, None), "logit_bias": (None, {}), "tools": (None, []),
            "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
            "response_format": (None, {"type": "text"}), "parallel_tool_calls": (None, False),
            "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,), "reasoning_effort": (None,)}
_IGNORED = {"model", "user", "metadata", "store", "service_tier", "stream_options"}
_HONOURED = {"messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop",
             "stream", "return_token_ids"}
_ROLES = ("user", "assistant")


class RequestError(Exception):
    """A request the server refuses: `status`, the field at fault (`param`) and a message naming it."""

    def __init__(self, status: int, param: str | None, message: str, code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.param, self.message, self.code = status, param, message, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.code, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class Sampling:
    """Token choice: greedy (`temperature` 0 or the checkpoint's greedy default), or sampling with these settings.

    None means "not set by the request": the checkpoint's generation config decides.
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A checked request: one image, the conversation as the backbone's template takes it, and the settings.

    Attributes:
        image: the decoded RGB image.
        query: the last user message's text; None when it has none (captioning).
        history: earlier (user, assistant) turns, oldest first.
        max_tokens: the token budget; None when the request sets none (the server's cap, or what the model's
            positions leave after the prompt, whichever is smaller).
        stop: strings that end the output (not included in it).
        return_token_ids: also answer the generated token ids (an extension, as vLLM's).
    """

    image: Image.Image
    query: str | None
    history: tuple[tuple[str, str], ...] = ()
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    stream: bool = False
    return_token_ids: bool = False


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise RequestError(400, None, f"the request body is not valid JSON ({type(exc).__name__}: {exc}); send a "
                                      "JSON object") from exc
    if not isinstance(body, dict):
        raise RequestError(400, None, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def parse_chat_request(body: dict, limits: Limits) -> ChatRequest:
    """The checked request, or `RequestError` for the first field that cannot be served."""
    _refuse_unsupported(body)
    image, query, history = _conversation(body.get("messages"), limits)
    max_tokens = _max_tokens(body, limits)
    return ChatRequest(image=image, query=query, history=history, max_tokens=max_tokens, sampling=_sampling(body),
                       stop=_stop(body.get("stop"), limits), stream=_boolean(body, "stream"),
                       return_token_ids=_boolean(body, "return_token_ids"))


# -- fields --------------------------------------------------------------------------------------------------------


def _refuse_unsupported(body: dict) -> None:
    for key, value in body.items():
        if key in _HONOURED or key in _IGNORED:
            continue
        if key in _NEUTRAL:
            if value not in _NEUTRAL[key]:
                raise RequestError(400, key, f"'{key}' = {json.dumps(value)[:80]} is not supported by this server "
                                             f"(it serves one greedy or sampled completion of text); leave it out")
            continue
        raise RequestError(400, key, f"unknown field '{key}'; supported: {', '.join(sorted(_HONOURED))}")


def _number(body: dict, key: str, kind: type, low: float, high: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise RequestError(400, key, f"'{key}' must be {'a number' if kind is float else 'an integer'}, "
                                     f"got {json.dumps(value)[:40]}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise RequestError(400, key, f"'{key}' must be {bound}, got {value}")
    return kind(value)


def _boolean(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(400, key, f"'{key}' must be true or false, got {json.dumps(value)[:40]}")
    return value


def _max_tokens(body: dict, limits: Limits) -> int | None:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = _number(body, key, int, 1)
    if value is None:
        return None
    if value > limits.max_tokens_cap:
        raise RequestError(400, key, f"'{key}' = {value} is over this server's cap of {limits.max_tokens_cap} "
                                     "(--max-tokens-cap); ask for fewer tokens")
    return value


def _sampling(body: dict) -> Sampling:
    temperature = _number(body, "temperature", float, 0.0, 2.0)
    top_p = _number(body, "top_p", float, 0.0, 1.0)
    if top_p == 0.0:
        raise RequestError(400, "top_p", "'top_p' must be > 0 (1 keeps every token)")
    top_k = _number(body, "top_k", int, 0)
    seed = _number(body, "seed", int, -(2**63), 2**63 - 1)
    return Sampling(temperature, top_p, top_k, seed)


def _stop(stop: Any, limits: Limits) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, "stop", "'stop' must be a non-empty string or a list of non-empty strings")
    if len(stops) > limits.max_stop:
        raise RequestError(400, "stop", f"'stop' has {len(stops)} strings; at most {limits.max_stop}")
    return tuple(stops)


# -- messages ------------------------------------------------------------------------------------------------------


def _conversation(messages: Any, limits: Limits) -> tuple[Image.Image, str | None, tuple[tuple[str, str], ...]]:
    """(image, last user text or None, earlier (user, assistant) turns) of an alternating user/assistant list."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages", "'messages' must be a non-empty list of {role, content} objects")
    if len(messages) > limits.max_messages:
        raise RequestError(400, "messages", f"'messages' has {len(messages)} entries; at most {limits.max_messages}")
    texts, images, chars = [], [], 0
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict) or "role" not in message:
            raise RequestError(400, param, f"'{param}' must be an object with 'role' and 'content'")
        expected = _ROLES[i % 2]
        if message["role"] == "system":
            raise RequestError(400, f"{param}.role", "system messages are not supported: the backbone's own prompt "
                                                     "template is applied; put instructions in the user message")
        if message["role"] != expected:
            raise RequestError(400, f"{param}.role", f"'{param}.role' must be '{expected}': messages alternate "
                                                     "user, assistant, ..., and end with a user message")
        text, found = _content(message.get("content"), f"{param}.content", limits)
        chars += len(text)
        texts.append(text)
        images += [(f"{param}.content", image) for image in found]
    if len(messages) % 2 == 0:
        raise RequestError(400, "messages", "the last message must be the user's")
    if chars > limits.max_text_chars:
        raise RequestError(400, "messages", f"the messages hold {chars} characters of text; at most "
                                            f"{limits.max_text_chars}")
    if len(images) != 1:
        raise RequestError(400, "messages", f"a request needs exactly one image (an image_url content part), got "
                                            f"{len(images)}")
    if images[0][0] != "messages[0].content":
        raise RequestError(400, images[0][0], "the image must be in the first user message")
    history = tuple(zip(texts[:-1:2], texts[1:-1:2], strict=True))
    if any(not q or not a for q, a in history):
        raise RequestError(400, "messages", "earlier turns of a conversation need text in both the user message "
                                            "and the assistant's answer")
    if history and not texts[-1]:
        raise RequestError(400, f"messages[{len(messages) - 1}].content", "the last user message of a conversation "
                                                                          "needs text")
    return images[0][1], texts[-1] or None, history


def _content(content: Any, param: str, limits: Limits) -> tuple[str, list[Image.Image]]:
    if isinstance(content, str):
        return content.strip(), []
    if not isinstance(content, list):
        raise RequestError(400, param, f"'{param}' must be a string or a list of content parts")
    texts, images = [], []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"].strip())
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise RequestError(400, f"{where}.image_url", f"'{where}.image_url' needs a 'url' string")
            images.append(load_image_url(url, f"{where}.image_url", limits))
        else:
            raise RequestError(400, where, f"'{where}' must be a {{type: text, text}} or {{type: image_url, "
                                           f"image_url: {{url}}}} part; got type {kind!r}")
    return "\n".join(t for t in texts if t), images


# -- images --------------------------------------------------------------------------------------------------------


def load_image_url(url: str, param: str, limits: Limits) -> Image.Image:
    """The RGB image of a `data:` URL or of a local path inside `limits.image_root`; refuses everything else."""
    scheme = urlparse(url).scheme.lower() if ":" in url[:12] else ""
    if scheme == "data":
        return decode_image(_data_url_bytes(url, param), param, limits)
    if scheme in ("http", "https", "ftp"):
        raise RequestError(400, param, f"remote image URLs ({scheme}://) are refused: this server makes no outbound "
                                       "requests; send the image inline as a base64 data: URL")
    if scheme not in ("", "file"):
        raise RequestError(400, param, f"image URL scheme '{scheme}:' is not supported; send a base64 data: URL")
    path = unquote(urlparse(url).path) if scheme == "file" else url
    return decode_image(_local_bytes(path, param, limits), param, limits)


def _data_url_bytes(url: str, param: str) -> bytes:
    header, _, payload = url.partition(",")
    if not header.endswith(";base64") or not payload:
        raise RequestError(400, param, "a data: URL must be base64: data:image/png;base64,<bytes>")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, param, f"the data: URL's payload is not valid base64 ({exc})") from exc


def _local_bytes(path: str, param: str, limits: Limits) -> bytes:
    if limits.image_root is None:
        raise RequestError(400, param, "local image paths are refused: this server was started without "
                                       "--image-root; send the image as a base64 data: URL")
    root = Path(limits.image_root).resolve()
    candidate = Path(path)
    try:
        # resolve() follows symlinks and '..': what is checked is the file that would be read
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve(strict=True)
    except (OSError, RuntimeError):
        raise RequestError(400, param, "the local image path does not exist inside --image-root") from None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise RequestError(400, param, "the local image path resolves outside --image-root (or is not a file); "
                                       "only files inside the image root are served")
    return resolved.read_bytes()


def decode_image(data: bytes, param: str, limits: Limits) -> Image.Image:
    """Decodes an image fully as RGB, after checking its declared size against the pixel limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            pixels = image.width * image.height
            if pixels > limits.max_image_pixels:
                raise RequestError(413, param, f"the image is {image.width}x{image.height} = {pixels} pixels; at "
                                               f"most {limits.max_image_pixels}; send a smaller image")
            return image.convert("RGB")
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(413, param, f"the image is too large to decode safely ({exc})") from exc
    except Exception as exc:  # PIL raises many kinds for corrupt data (OSError, SyntaxError, ValueError, ...)
        raise RequestError(400, param, f"the image could not be decoded ({type(exc).__name__}); send a PNG, "
                                       "JPEG or WebP image") from exc
