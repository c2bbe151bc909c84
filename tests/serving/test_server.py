"""`python -m lightning_ssd serve` end to end: real servers on free loopback ports, the real `openai` client.

Five servers start together (their start-ups overlap): tiny LLaVA with a random draft head (SSD) and with the full
model alone (two LitServe inference workers of one row each, 8192 positions), tiny BLIP-2 OPT with the plain early
exit (`--n 1`) and with the full model alone, tiny Qwen2.5-VL with the plain early exit and the adaptive draft
length. Each serves a checkpoint folder whose weights were re-drawn larger, so that greedy answers vary with the
image and the prompt instead of repeating one token. Their answers are compared, token for token, with the offline
`generate` command on the same checkpoint folders, image files and prompts.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest
import torch

from lightning_ssd.backbones import load_backbone, load_processor
from lightning_ssd.models.checkpoint import save_draft
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.tools.generate import main as generate_main
from tests.serving.servers import data_url, metric, random_image, start, stop, user, wait_ready

MAX_NEW = 24
CAP = 4000  # the greedy LLaVA server's cap: long enough to disconnect mid-stream
PROMPT = "What is in the image?"
KEY = "test-key-123"
IMAGES = 4


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    images = root / "images"
    images.mkdir()
    for i in range(IMAGES):
        random_image(i).save(images / f"img{i}.png")
    random_image(99).save(root / "outside.png")
    (images / "link.png").symlink_to(root / "outside.png")
    llava, blip2, qwen = (_chaotic_checkpoint(name, root / "models" / name)
                          for name in ("tiny-llava", "tiny-blip2-opt", "tiny-qwen2.5-vl"))
    # LLaVA's rotary positions have no table: 8192 positions let its requests run long enough to disconnect from
    llava_long = _chaotic_checkpoint("tiny-llava", root / "models" / "tiny-llava-long", max_positions=8192)
    vlm = load_backbone(llava)
    torch.manual_seed(0)
    save_draft(ImitationNetwork(vlm.decoder.hidden_size, attention=True, residual=False).eval(), 2, vlm, llava,
               root / "draft")
    common = ["--image-root", str(images)]
    specs = {
        "llava-ssd": ["--backbone", llava, "--draft-head", str(root / "draft"), "--draft", "3", "--prefill-batch", "3",
                      "--max-tokens-cap", "64", "--max-body-mb", "1", "--max-image-pixels", "100000",
                      "--max-prompt-tokens", "80", *common],
        "llava-greedy": ["--backbone", llava_long, "--mode", "greedy", "--api-key", KEY, "--workers", "2",
                         "--max-batch-size", "1", "--max-queue", "1", "--max-tokens-cap", str(CAP), *common],
        "blip2-ssd": ["--backbone", blip2, "--n", "1", "--draft", "4", *common],
        "blip2-greedy": ["--backbone", blip2, "--mode", "greedy", "--max-tokens-cap", "440", *common],
        "qwen-ssd": ["--backbone", qwen, "--n", "2", "--draft", "adaptive", *common],
    }
    with ExitStack() as stack:
        servers = {}
        for name, args in specs.items():
            servers[name] = start(args, root / f"{name}.log")
            stack.callback(stop, servers[name])
        references = {"tiny-llava": _offline(root, images, llava), "tiny-blip2-opt": _offline(root, images, blip2),
                      "tiny-qwen2.5-vl": _offline(root, images, qwen), "tiny-llava-long": _offline(root, images,
                                                                                                   llava_long)}
        for server in servers.values():
            wait_ready(server)
        yield {"root": root, "images": images, "servers": servers, "references": references}


def _chaotic_checkpoint(preset: str, folder, max_positions: int | None = None) -> str:
    """A checkpoint folder of `preset` with every matrix re-drawn at std 0.2 (the vision tower too, so that the
    answer depends on the image), and optionally another number of positions (rotary models only)."""
    vlm = load_backbone(preset)
    if max_positions is not None:
        vlm.model.config.text_config.max_position_embeddings = max_positions
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in vlm.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    vlm.model.save_pretrained(folder)
    load_processor(preset).save_pretrained(folder)
    return str(folder)


def _offline(root, images, backbone: str) -> dict[tuple[int, str | None], dict]:
    """Offline `generate` (--mode greedy, batch size 1) for every image, captioned and asked PROMPT."""
    out = {}
    for prompt in (None, PROMPT):
        listing = root / f"{Path(backbone).name}-{prompt is None}.jsonl"
        listing.write_text("".join(json.dumps({"image": str(images / f"img{i}.png"), "id": i, "prompt": prompt})
                                   + "\n" for i in range(IMAGES)))
        target = root / f"{Path(backbone).name}-{prompt is None}-out.jsonl"
        generate_main(["--backbone", backbone, "--mode", "greedy", "--images", str(listing), "--output", str(target),
                       "--batch-size", "1", "--max-new-tokens", str(MAX_NEW)])
        for line in target.read_text().splitlines():
            row = json.loads(line)
            out[(row["id"], prompt)] = row
    return out


def _client(server, key: str = "none", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60, **kwargs)


def _ask(client, image: int, prompt: str | None, **kwargs):
    url = data_url(random_image(image))
    extra = {"return_token_ids": True, **kwargs.pop("extra_body", {})}
    return client.chat.completions.create(model="m", messages=user(url, prompt), extra_body=extra, **kwargs)


def _tokens(reply) -> list[int]:
    return reply.choices[0].model_extra["token_ids"]


CASES = [(i, p) for i in range(IMAGES) for p in (None, PROMPT)]


FAMILY = {"llava": "tiny-llava", "blip2": "tiny-blip2-opt", "qwen": "tiny-qwen2.5-vl"}


@pytest.mark.parametrize("name", ["llava-ssd", "llava-greedy", "blip2-ssd", "blip2-greedy", "qwen-ssd"])
def test_greedy_answers_equal_offline_generate(env, name):
    server = env["servers"][name]
    references = env["references"]["tiny-llava-long" if name == "llava-greedy" else FAMILY[name.split("-")[0]]]
    client = _client(server, KEY)
    for image, prompt in CASES:
        reply = _ask(client, image, prompt, max_tokens=MAX_NEW, temperature=0)
        expected = references[(image, prompt)]
        assert _tokens(reply) == expected["tokens"], (image, prompt)
        assert reply.choices[0].message.content == expected["text"]
        assert reply.usage.completion_tokens == len(expected["tokens"])
        assert reply.choices[0].finish_reason == ("length" if len(expected["tokens"]) == MAX_NEW else "stop")
        ssd = reply.model_extra["ssd"]
        if name.endswith("ssd"):
            assert ssd["tau"] >= 1 and ssd["cycles"] >= 1 and ssd["drafted"] >= 1
        else:
            assert ssd["tau"] is None


def test_the_checkpoint_generation_config_decides_when_temperature_is_absent(env):
    """The tiny presets' generation config is greedy: no temperature gives the greedy answer."""
    reply = _ask(_client(env["servers"]["llava-ssd"]), 0, PROMPT, max_tokens=MAX_NEW)
    assert _tokens(reply) == env["references"]["tiny-llava"][(0, PROMPT)]["tokens"]


def test_a_local_path_inside_the_image_root_is_served(env):
    client = _client(env["servers"]["llava-ssd"])
    for url in (str(env["images"] / "img1.png"), f"file://{env['images'] / 'img1.png'}", "img1.png"):
        reply = client.chat.completions.create(model="m", messages=user(url), max_tokens=MAX_NEW, temperature=0,
                                               extra_body={"return_token_ids": True})
        assert _tokens(reply) == env["references"]["tiny-llava"][(1, None)]["tokens"]


@pytest.mark.parametrize("name", ["llava-ssd", "blip2-ssd"])
def test_streamed_chunks_join_to_the_answer(env, name):
    client = _client(env["servers"][name])
    for image, prompt in CASES[:4]:
        whole = _ask(client, image, prompt, max_tokens=MAX_NEW, temperature=0)
        chunks = list(_ask(client, image, prompt, max_tokens=MAX_NEW, temperature=0, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        assert sum(bool(c.choices[0].delta.content) for c in chunks) >= 2  # tokens arrive as cycles accept them


def test_32_concurrent_requests_each_equal_their_answer_alone(env):
    server = env["servers"]["llava-ssd"]
    sampled = {"temperature": 1.0, "extra_body": {"top_k": 20}}
    kinds = [dict(temperature=0)] * 3 + [dict(sampled, seed=5)]
    jobs = [(i % IMAGES, PROMPT if i % 2 else None, kinds[(i // 4) % 4]) for i in range(32)]
    alone = {}
    client = _client(server)
    for image, prompt, kind in jobs:
        key = (image, prompt, json.dumps(kind, sort_keys=True))
        if key not in alone:
            alone[key] = _tokens(_ask(client, image, prompt, max_tokens=MAX_NEW, **kind))

    async def together():
        aclient = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120)
        async with aclient:
            return await asyncio.gather(*[aclient.chat.completions.create(
                model="m", messages=user(data_url(random_image(image)), prompt), max_tokens=MAX_NEW,
                **{**kind, "extra_body": {"return_token_ids": True, **kind.get("extra_body", {})}})
                for image, prompt, kind in jobs])

    replies = asyncio.run(together())
    for (image, prompt, kind), reply in zip(jobs, replies, strict=True):
        assert _tokens(reply) == alone[(image, prompt, json.dumps(kind, sort_keys=True))]
    # the seed matters: the sampled answers are samples, not the greedy ones
    seeded = alone[(3, PROMPT, json.dumps(kinds[3], sort_keys=True))]
    assert _tokens(_ask(client, 3, PROMPT, max_tokens=MAX_NEW, **dict(sampled, seed=6))) != seeded
    assert seeded != alone[(3, PROMPT, json.dumps(kinds[0], sort_keys=True))]


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_string_ends_the_answer_before_it(env, stream):
    text = env["references"]["tiny-llava"][(0, PROMPT)]["text"]
    start = next(i for i in range(3, len(text) - 3)
                 if text[i : i + 3].isprintable() and "\ufffd" not in text[i : i + 3])
    stop = text[start : start + 3]
    expected = text[: text.find(stop)].rstrip()
    client = _client(env["servers"]["llava-ssd"])
    kwargs = dict(max_tokens=MAX_NEW, temperature=0, stop=[stop, "never-there"])
    if stream:
        chunks = list(_ask(client, 0, PROMPT, stream=True, **kwargs))
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = chunks[-1].choices[0].finish_reason
    else:
        reply = _ask(client, 0, PROMPT, **kwargs)
        answer, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
    assert (answer, reason) == (expected, "stop")


def _bomb() -> str:
    """A PNG of a few hundred bytes that declares 20000 x 20000 pixels."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 20000 // 8) * 20000, 9)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _bad_cases(env) -> list[tuple[str, object, int, str]]:
    good = data_url(random_image(0))
    base = {"model": "m", "messages": user(good), "max_tokens": 8}
    root = env["root"]
    return [
        ("malformed JSON", b"{not json", 400, "not valid JSON"),
        ("JSON nested too deep", b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
        ("JSON that is no object", b"[1, 2]", 400, "must be a JSON object"),
        ("messages not a list", {"messages": "hi"}, 400, "'messages' must be a non-empty list"),
        ("no image", {"messages": [{"role": "user", "content": "hi"}]}, 400, "exactly one image"),
        ("two images", {"messages": [{"role": "user", "content": user(good)[0]["content"] * 2}]}, 400,
         "exactly one image"),
        ("system message", {"messages": [{"role": "system", "content": "x"}, *user(good)]}, 400, "system messages"),
        ("roles out of order", {"messages": [{**user(good)[0], "role": "assistant"}]}, 400, "must be 'user'"),
        ("remote URL", {**base, "messages": user("http://169.254.169.254/latest/meta-data")}, 400,
         "remote image URLs (http://) are refused"),
        ("remote https URL", {**base, "messages": user("https://example.com/cat.png")}, 400, "no outbound"),
        ("path outside root", {**base, "messages": user(str(root / "outside.png"))}, 400, "outside --image-root"),
        ("dot-dot escape", {**base, "messages": user("../outside.png")}, 400, "outside --image-root"),
        ("symlink escape", {**base, "messages": user("link.png")}, 400, "outside --image-root"),
        ("missing file", {**base, "messages": user("nope.png")}, 400, "does not exist"),
        ("corrupt image", {**base, "messages": user("data:image/png;base64,Z2FyYmFnZQ==")}, 400,
         "could not be decoded"),
        ("not base64", {**base, "messages": user("data:image/png;base64,@@@")}, 400, "not valid base64"),
        ("too many pixels", {**base, "messages": user(data_url(random_image(1, size=400)))}, 413, "pixels"),
        ("decompression bomb", {**base, "messages": user(_bomb())}, 413, "pixels"),
        ("body too large", {**base, "pad": "x" * (2 * 2**20)}, 413, "request body"),
        ("prompt too long (found by the worker)", {**base, "messages": user(good, "a b c d e f " * 20)}, 400,
         "this server takes at most 80"),
        ("max_tokens over the cap", {**base, "max_tokens": 65}, 400, "over this server's cap of 64"),
        ("n > 1", {**base, "n": 2}, 400, "'n' = 2 is not supported"),
        ("logprobs", {**base, "logprobs": True}, 400, "'logprobs' = true is not supported"),
        ("tools", {**base, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "'tools'"),
        ("unknown field", {**base, "beam_width": 4}, 400, "unknown field 'beam_width'"),
        ("temperature not a number", {**base, "temperature": "hot"}, 400, "'temperature' must be a number"),
        ("temperature out of range", {**base, "temperature": 9}, 400, "'temperature' must be in"),
        ("stop not strings", {**base, "stop": [1]}, 400, "'stop'"),
    ]


def test_every_bad_input_gets_its_status_and_message_while_a_good_request_succeeds(env):
    server = env["servers"]["llava-ssd"]
    cases = _bad_cases(env)

    async def send_all():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            def post(body):
                if isinstance(body, bytes):
                    return http.post("/v1/chat/completions", content=body,
                                     headers={"content-type": "application/json"})
                return http.post("/v1/chat/completions", json=body)

            good = http.post("/v1/chat/completions", json={"messages": user(data_url(random_image(2)), PROMPT),
                                                            "max_tokens": MAX_NEW, "temperature": 0})
            return await asyncio.gather(good, *[post(body) for _, body, _, _ in cases])

    good, *answers = asyncio.run(send_all())
    assert good.status_code == 200
    assert good.json()["choices"][0]["message"]["content"] == env["references"]["tiny-llava"][(2, PROMPT)]["text"]
    assert "token_ids" not in good.json()["choices"][0]  # only when asked for
    for (what, _, status, message), answer in zip(cases, answers, strict=True):
        assert answer.status_code == status, (what, answer.text)
        assert message in answer.json()["error"]["message"], (what, answer.text)
    assert metric(server, "ssd_requests_in_flight") == 0


def test_the_api_key_is_enforced_on_v1_only(env):
    server = env["servers"]["llava-greedy"]
    for key in ("none", KEY[:-1]):
        with pytest.raises(openai.AuthenticationError):
            _ask(_client(server, key), 0, None, max_tokens=4)
    assert _ask(_client(server, KEY), 0, None, max_tokens=4).usage.completion_tokens >= 1
    answer = httpx.post(f"{server.url}/v1/chat/completions", headers={"X-API-Key": KEY},
                        json={"messages": user(data_url(random_image(0))), "max_tokens": 4})
    assert answer.status_code == 200
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"][0]["id"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_max_tokens_must_fit_the_models_positions(env):
    server = env["servers"]["blip2-greedy"]  # tiny BLIP-2 OPT: 512 learned positions; cap 440
    client = _client(server)
    text = "a b c d e f g h " * 12
    with pytest.raises(openai.BadRequestError, match="exceed the model's 512 positions; ask for at most"):
        _ask(client, 0, text, max_tokens=440, temperature=0)
    reply = _ask(client, 0, text, temperature=0)  # no max_tokens: what the positions leave, under the cap
    total = reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert total == 512 if reply.choices[0].finish_reason == "length" else total < 512


def test_a_full_server_answers_429_with_retry_after(env):
    server = env["servers"]["llava-greedy"]  # 1 row, 1 queued

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120, headers={"X-API-Key": KEY}) as http:
            body = {"messages": user(data_url(random_image(3))), "max_tokens": 300, "temperature": 0}
            return await asyncio.gather(*[http.post("/v1/chat/completions", json=body) for _ in range(6)])

    answers = asyncio.run(burst())
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) == {200, 429}, codes
    full = next(a for a in answers if a.status_code == 429)
    assert full.headers["retry-after"] == "1" and "server is full" in full.json()["error"]["message"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_row(env, stream):
    server = env["servers"]["llava-greedy"]
    cancelled = metric(server, 'ssd_requests_total{status="499"}') if _has(server, "499") else 0
    body = {"messages": user(data_url(random_image(1))), "max_tokens": CAP, "temperature": 0, "stream": stream}
    if stream:
        with httpx.Client(timeout=60, headers={"X-API-Key": KEY}) as http:
            with http.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
                lines = response.iter_lines()
                for _ in range(3):
                    next(lines)
                assert metric(server, "ssd_live_rows") == 1
                generated = metric(server, "ssd_generated_tokens_total")
    else:  # the client gives up waiting and closes the connection
        with httpx.Client(timeout=0.5, headers={"X-API-Key": KEY}) as http, pytest.raises(httpx.ReadTimeout):
            http.post(f"{server.url}/v1/chat/completions", json=body)
        generated = metric(server, "ssd_generated_tokens_total")
    start = time.monotonic()
    while metric(server, "ssd_live_rows") != 0:
        assert time.monotonic() - start < 5, "the row was not freed"
        time.sleep(0.05)
    assert metric(server, 'ssd_requests_total{status="499"}') == cancelled + 1
    assert metric(server, "ssd_generated_tokens_total") - generated < CAP / 2  # stopped, not run to the cap


def test_two_workers_answer_and_cancel_across_workers(env):
    server = env["servers"]["llava-greedy"]  # 2 LitServe workers x 1 row, 1 queued
    references = env["references"]["tiny-llava-long"]

    async def together():
        async with httpx.AsyncClient(base_url=server.url, timeout=120, headers={"X-API-Key": KEY}) as http:
            return await asyncio.gather(*[
                http.post("/v1/chat/completions", json={"messages": user(data_url(random_image(image)), prompt),
                                                        "max_tokens": MAX_NEW, "temperature": 0,
                                                        "return_token_ids": True}) for image, prompt in CASES[:3]])

    for (image, prompt), answer in zip(CASES[:3], asyncio.run(together()), strict=True):
        assert answer.json()["choices"][0]["token_ids"] == references[(image, prompt)]["tokens"]
    # two streams, one on each worker, both dropped: each worker frees its row
    cancelled = metric(server, 'ssd_requests_total{status="499"}') if _has(server, "499") else 0
    with httpx.Client(timeout=60, headers={"X-API-Key": KEY}) as http, ExitStack() as streams:
        for image in (0, 1):
            body = {"messages": user(data_url(random_image(image))), "max_tokens": CAP, "temperature": 0,
                    "stream": True}
            lines = streams.enter_context(http.stream("POST", f"{server.url}/v1/chat/completions", json=body))
            for _, _ in zip(range(3), lines.iter_lines(), strict=False):
                pass
        assert metric(server, "ssd_live_rows") == 2  # more rows than one worker has
        assert metric(server, "ssd_tokens_per_second") > 0
    start = time.monotonic()
    while metric(server, "ssd_live_rows") != 0:
        assert time.monotonic() - start < 5, "a row was not freed"
        time.sleep(0.05)
    assert metric(server, 'ssd_requests_total{status="499"}') == cancelled + 2


def _has(server, status: str) -> bool:
    return f'status="{status}"' in httpx.get(f"{server.url}/metrics").text


def test_metrics_and_models(env):
    server = env["servers"]["blip2-ssd"]
    _ask(_client(server), 0, None, max_tokens=MAX_NEW, temperature=0)
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("ssd_requests_total", "ssd_live_rows", "ssd_queued_requests", "ssd_tokens_per_second",
                 "ssd_generated_tokens_total", "ssd_tau", "ssd_alpha"):
        assert name in text
    assert metric(server, "ssd_tau") >= 1 and 0 <= metric(server, "ssd_alpha") <= 1
    assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"] == "tiny-blip2-opt"
