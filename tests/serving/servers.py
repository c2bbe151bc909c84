"""Servers for the tests: `python -m lightning_ssd serve` on a free loopback port (the bench's launcher, which puts
each server in its own process group and always stops all of it), and request helpers."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lightning_ssd.bench.serve_load import ServerProcess, start_server, stop_server, wait_ready

__all__ = ["data_url", "metric", "random_image", "start", "stop", "user", "wait_ready"]


def start(args: list[str], log: Path) -> ServerProcess:
    """Launches a server with one torch thread (not waiting for it)."""
    return start_server([*args, "--threads", "1"], log)


stop = stop_server


def metric(server: ServerProcess, name: str) -> float:
    """A sample's value in the server's /metrics (`name` with its labels, as exposed)."""
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def random_image(seed: int, size: int = 24) -> Image.Image:
    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype("uint8")
    return Image.fromarray(pixels)


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def user(url: str, text: str | None = None) -> list[dict]:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    if text:
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]
