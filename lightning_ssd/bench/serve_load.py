"""Load bench of the server: N concurrent streaming clients against `serve` with SSD and with `--mode greedy`.

Each server is started as `python -m lightning_ssd serve` on a free loopback port (its own process group, always
stopped), warmed up, then sent `num_requests` chat requests (images of the embedded benchmark's test split, the
captioning prompt) at each concurrency: a client sends its next request when its previous answer is complete.
Per server and concurrency: generated tokens per second over the makespan, p50/p95 latency (send to last token),
p50/p95 time to first token, failed requests, and the server's resident memory (PSS summed over all its
processes) before the load and after each concurrency.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

START_TIMEOUT_S = 300


@dataclass
class ServeBenchConfig:
    """What to run.

    Args:
        backbone: preset name or checkpoint folder.
        draft_head: imitation checkpoint or draft folder for the SSD server; None: the plain early exit at `n`.
        n: the early-exit layer without a head (default L // 4).
        draft: the SSD server's `--draft`.
        redundant_deep_layers: serve a copy of the backbone whose layers n..L write nothing to the residual stream
            (alpha = 1 by construction): an upper bound that tests the plumbing, not a trained draft.
        num_requests: requests per concurrency level.
        concurrency: client counts to run, each on its own.
        max_tokens: each request's budget (EOS still ends it).
        max_batch_size: the servers' live rows.
        max_prompt_tokens: the servers' `--max-prompt-tokens` (with `max_tokens`, it sizes the preallocated cache).
        threads: torch CPU threads in each server's inference worker.
        workers: inference workers per server (each with `max_batch_size` rows).
        warmup: requests sent (one at a time) before measuring.
    """

    backbone: str = "small-llava"
    draft_head: str | None = None
    n: int | None = None
    draft: str = "6"
    redundant_deep_layers: bool = False
    num_requests: int = 32
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_tokens: int = 32
    max_batch_size: int = 16
    max_prompt_tokens: int = 1024
    threads: int | None = 1
    workers: int = 1
    warmup: int = 2


# -- a server process ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A `serve` process (the leader of its own process group) and where it listens."""

    port: int
    process: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)
    ready_s: float | None = None  # seconds from launch to the first 200 from /health

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_server(args: list[str], log: Path) -> ServerProcess:
    """Launches `python -m lightning_ssd serve ARGS --port P` on a free loopback port, without waiting for it."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LIGHTNING_SSD_API_KEY", None)  # its clients send no key: the server listens on loopback only
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "lightning_ssd", "serve", *args, "--host", "127.0.0.1",
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return ServerProcess(port, process, log)


def wait_ready(server: ServerProcess, timeout_s: float = START_TIMEOUT_S) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited ({server.process.returncode}):\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                server.ready_s = time.monotonic() - server.started
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the server did not answer /health in {timeout_s:.0f} s:\n{server.log.read_text()}")


def stop_server(server: ServerProcess) -> None:
    """SIGTERM (the server stops its workers), then SIGKILL whatever is left of its process group."""
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


@contextmanager
def running_server(args: list[str], log: Path):
    server = start_server(args, log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop_server(server)


def group_memory_mb(pgid: int) -> float:
    """Resident memory of every process in a process group (the server, its HTTP process and inference worker), in
    MB: the sum of their PSS (each shared page counted once over the processes that share it, so that the pages a
    forked process shares with its parent are not counted twice); VmRSS where PSS is not available."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            total_kb += _pss_kb(entry)
        except (OSError, ValueError, IndexError):
            continue
    return total_kb / 1024


def _pss_kb(proc: Path) -> int:
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in (proc / name).read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1])
        except OSError:
            continue
    return 0


# -- the load --------------------------------------------------------------------------------------------------------


def benchmark_images(count: int) -> list[str]:
    """Data URLs of the embedded benchmark's first `count` test images."""
    from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item

    config, urls = SyntheticConfig(seed=0), []
    for i in range(count):
        buffer = io.BytesIO()
        generate_item(config, "test", i).image.save(buffer, "PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls


async def _one(http, url: str, image: str, max_tokens: int) -> dict:
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True}
    start, first, tokens, done = time.perf_counter(), None, 0, False
    try:
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return {"ok": False, "error": f"HTTP {response.status_code}"}
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return {"ok": False, "error": chunk["error"]["message"]}
                if first is None and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter()
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except Exception as exc:  # a dropped connection or a timeout counts as a failed request
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    end = time.perf_counter()
    return {"ok": done, "latency_s": end - start, "ttft_s": (first or end) - start, "tokens": tokens}


async def run_load(url: str, images: list[str], concurrency: int, max_tokens: int) -> dict:
    """Sends one request per image from `concurrency` clients; the figures of this run."""
    import httpx

    queue = list(reversed(images))
    results: list[dict] = []

    async def client(http) -> None:
        while queue:
            results.append(await _one(http, url, queue.pop(), max_tokens))

    limits = httpx.Limits(max_connections=concurrency + 1)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await asyncio.gather(*[client(http) for _ in range(concurrency)])
    makespan = time.perf_counter() - start
    ok = [r for r in results if r["ok"]]
    latency, ttft = [r["latency_s"] for r in ok], [r["ttft_s"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    return {"concurrency": concurrency, "requests": len(results), "failed": len(results) - len(ok),
            "errors": sorted({r["error"] for r in results if not r["ok"] and "error" in r})[:3],
            "tokens": tokens, "makespan_s": makespan, "tokens_per_s": tokens / makespan,
            "p50_latency_s": _percentile(latency, 0.5), "p95_latency_s": _percentile(latency, 0.95),
            "p50_ttft_s": _percentile(ttft, 0.5), "p95_ttft_s": _percentile(ttft, 0.95)}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the bench -------------------------------------------------------------------------------------------------------


def _redundant_copy(cfg: ServeBenchConfig, folder: Path) -> tuple[str, int]:
    from lightning_ssd.backbones import load_backbone, load_processor
    from lightning_ssd.bench.runner import make_redundant

    vlm = load_backbone(cfg.backbone)
    n = cfg.n or max(1, vlm.decoder.num_layers // 4)
    make_redundant(vlm, n)
    vlm.model.save_pretrained(folder)
    load_processor(cfg.backbone).save_pretrained(folder)
    return str(folder), n


def serve_benchmark(cfg: ServeBenchConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
                    ) -> dict:
    """Both servers at every concurrency; one JSON-able report."""
    images = benchmark_images(cfg.num_requests + cfg.warmup)
    report: dict = {"config": asdict(cfg), "servers": []}
    with tempfile.TemporaryDirectory() as tmp:
        backbone, n = cfg.backbone, cfg.n
        if cfg.redundant_deep_layers:
            backbone, n = _redundant_copy(cfg, Path(tmp) / "redundant")
        common = ["--backbone", backbone, "--max-batch-size", str(cfg.max_batch_size), "--max-queue",
                  str(max(cfg.concurrency)), "--max-tokens-cap", str(cfg.max_tokens), "--max-prompt-tokens",
                  str(cfg.max_prompt_tokens), "--workers", str(cfg.workers), "--log-level", "error"]
        if cfg.threads:
            common += ["--threads", str(cfg.threads)]
        ssd = ["--draft", cfg.draft] + (["--draft-head", cfg.draft_head] if cfg.draft_head else
                                        (["--n", str(n)] if n else []))
        for mode, extra in (("ssd", ssd), ("greedy", ["--mode", "greedy"])):
            with running_server(common + extra, Path(tmp) / f"{mode}.log") as server:
                row = {"mode": mode, "ready_s": server.ready_s, "memory_mb_before": group_memory_mb(server.process.pid),
                       "runs": []}
                asyncio.run(run_load(server.url, images[: cfg.warmup], 1, cfg.max_tokens))
                for concurrency in cfg.concurrency:
                    run = asyncio.run(run_load(server.url, images[cfg.warmup:], concurrency, cfg.max_tokens))
                    run["memory_mb_after"] = group_memory_mb(server.process.pid)
                    row["runs"].append(run)
                    log(f"  {mode:6s} concurrency {concurrency:2d}: {run['tokens_per_s']:.1f} tok/s, p95 latency "
                        f"{run['p95_latency_s']:.3f} s, {run['failed']} failed, memory {run['memory_mb_after']:.0f} MB")
                row["metrics"] = _scrape(server.url)
                report["servers"].append(row)
    return report


def _scrape(url: str) -> dict:
    import httpx

    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("ssd_tau ", "ssd_alpha ", "ssd_generated_tokens_total ")):
            name, value = line.split()
            values[name] = float(value)
    return values


def format_serve(report: dict) -> str:
    """The bench table, with the SSD server's ratios to the greedy server at each concurrency."""
    lines = ["| server | clients | tok/s | x greedy | p50 latency s | p95 latency s | p50 TTFT s | p95 TTFT s | failed "
             "| memory MB before -> after |", "|---|---|---|---|---|---|---|---|---|---|"]
    greedy = next((s for s in report["servers"] if s["mode"] == "greedy"), None)
    for server in report["servers"]:
        for i, run in enumerate(server["runs"]):
            base = greedy["runs"][i] if greedy else None  # both servers run the same concurrencies in order
            ratio = f"{run['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base and base["tokens_per_s"] else ""
            lines.append(f"| {server['mode']} | {run['concurrency']} | {run['tokens_per_s']:.1f} | {ratio} | "
                         f"{run['p50_latency_s']:.3f} | {run['p95_latency_s']:.3f} | {run['p50_ttft_s']:.3f} | "
                         f"{run['p95_ttft_s']:.3f} | {run['failed']} | {server['memory_mb_before']:.0f} -> "
                         f"{run['memory_mb_after']:.0f} |")
    lines.append("\nStart-up to a ready /health: " + ", ".join(f"{s['mode']} {s['ready_s']:.1f} s"
                                                              for s in report["servers"]))
    for server in report["servers"]:
        m = server["metrics"]
        if server["mode"] == "ssd":
            lines.append(f"\nSSD server: tau {m.get('ssd_tau', float('nan')):.2f}, alpha "
                         f"{m.get('ssd_alpha', float('nan')):.3f} over {m.get('ssd_generated_tokens_total', 0):.0f} "
                         "tokens")
    return "\n".join(lines)
