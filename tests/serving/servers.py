"""Starting `python -m lightning_ssd serve` on a free loopback port for a test, and always stopping it.

Each server runs in its own process group, so that teardown reaches LitServe's worker processes too.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

START_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)


def start(args: list[str], log: Path) -> Server:
    """Launches a server (not waiting for it)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LIGHTNING_SSD_API_KEY", None)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "lightning_ssd", "serve", *args, "--port", str(port),
                                    "--threads", "1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return Server(port, process, log)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited ({server.process.returncode}):\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the server did not answer /health in {START_TIMEOUT_S} s:\n{server.log.read_text()}")


def stop(server: Server) -> None:
    """SIGTERM (LitServe shuts its workers down), then SIGKILL whatever of its process group is left."""
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.process.wait(timeout=10)


def serving(stack: ExitStack, specs: dict[str, list[str]], folder: Path) -> dict[str, Server]:
    """Starts every server at once (their start-ups overlap), registers their teardown, waits for all."""
    servers = {}
    for name, args in specs.items():
        servers[name] = start(args, folder / f"{name}.log")
        stack.callback(stop, servers[name])
    for server in servers.values():
        wait_ready(server)
    return servers


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
