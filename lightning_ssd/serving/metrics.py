"""Prometheus metrics shared by the two processes of a LitServe server.

LitServe decodes in inference worker processes and answers HTTP in another. The workers' figures (live rows,
queue, tokens, acceptance) sit in a small shared-memory array, one row per worker, read by the HTTP process when
`/metrics` is scraped; the HTTP process counts requests by status itself. The array is created before the workers are
spawned and travels with the LitAPI to them (`multiprocessing` shares it with the children).

Exposed (all prefixed `ssd_`): `requests_total{status}`, `requests_in_flight`, `live_rows`, `queued_requests`,
`generated_tokens_total`, `tokens_per_second` (over the last `WINDOW_S` seconds), `cycles_total`, `tau` (tokens per
speculative cycle), `alpha` (accepted drafts over judged drafts), both over all requests served so far.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter, deque

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

WINDOW_S = 10.0
_FIELDS = ("live_rows", "queued", "generated", "cycles", "spec_cycles", "spec_emitted", "accepted", "judged",
           "tokens_per_s")


class EngineStats:
    """The workers' figures in shared memory: one row per inference worker, written by that worker alone (so that
    no two processes ever update one value), summed by the reader.

    Args:
        workers: inference workers; each calls `bind(worker_id)` once it runs.
    """

    def __init__(self, workers: int = 1) -> None:
        self._values = mp.get_context("spawn").Array("d", workers * len(_FIELDS))
        self.workers, self._row = workers, 0
        self._window: deque[tuple[float, int]] = deque()

    def __getstate__(self) -> dict:
        return {"_values": self._values, "workers": self.workers}

    def __setstate__(self, state: dict) -> None:
        self._values, self.workers, self._row, self._window = state["_values"], state["workers"], 0, deque()

    def bind(self, worker_id: int) -> None:
        """Writes go to this worker's row from now on."""
        if not 0 <= worker_id < self.workers:
            raise ValueError(f"worker {worker_id} of {self.workers}")
        self._row = worker_id * len(_FIELDS)

    def add(self, name: str, amount: float) -> None:
        self._values[self._row + _FIELDS.index(name)] += amount

    def set(self, name: str, value: float) -> None:
        self._values[self._row + _FIELDS.index(name)] = value

    def record_tokens(self, count: int) -> None:
        """Counts generated tokens and refreshes the tokens/s of the last `WINDOW_S` seconds."""
        now = time.monotonic()
        self.add("generated", count)
        self._window.append((now, count))
        while self._window and self._window[0][0] < now - WINDOW_S:
            self._window.popleft()
        self.set("tokens_per_s", sum(c for _, c in self._window) / WINDOW_S)

    def snapshot(self) -> dict[str, float]:
        """Every figure summed over the workers."""
        values, width = self._values[:], len(_FIELDS)
        return {name: sum(values[w * width + i] for w in range(self.workers)) for i, name in enumerate(_FIELDS)}


class ServerMetrics:
    """The HTTP process's counters plus the worker's `EngineStats`, as one Prometheus registry."""

    def __init__(self, stats: EngineStats) -> None:
        self.stats = stats
        self.requests: Counter[int] = Counter()
        self.in_flight = 0
        self._registry: CollectorRegistry | None = None

    def __getstate__(self) -> dict:
        return {"stats": self.stats}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["stats"])

    def collect(self):
        s = self.stats.snapshot()
        requests = CounterMetricFamily("ssd_requests", "chat completion requests answered, by HTTP status",
                                       labels=["status"])
        for status, count in sorted(self.requests.items()):
            requests.add_metric([str(status)], count)
        yield requests
        yield GaugeMetricFamily("ssd_requests_in_flight", "requests decoding or queued", value=self.in_flight)
        yield GaugeMetricFamily("ssd_live_rows", "requests being decoded (engine rows in use)", value=s["live_rows"])
        # waiting: in LitServe's queue (where a request stays until a worker has a free row) or the engine's
        queued = max(0, self.in_flight - s["live_rows"])
        yield GaugeMetricFamily("ssd_queued_requests", "requests waiting for a row", value=queued)
        yield CounterMetricFamily("ssd_generated_tokens", "tokens generated", value=s["generated"])
        yield GaugeMetricFamily("ssd_tokens_per_second", f"tokens generated per second over the last {WINDOW_S:g} s",
                                value=s["tokens_per_s"])
        yield CounterMetricFamily("ssd_cycles", "decoding cycles (one per row per engine step)", value=s["cycles"])
        tau = s["spec_emitted"] / s["spec_cycles"] if s["spec_cycles"] else float("nan")
        alpha = s["accepted"] / s["judged"] if s["judged"] else float("nan")
        yield GaugeMetricFamily("ssd_tau", "tokens per speculative cycle (mean accepted length), all requests",
                                value=tau)
        yield GaugeMetricFamily("ssd_alpha", "accepted over judged draft tokens, all requests", value=alpha)

    def exposition(self) -> bytes:
        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)
        return generate_latest(self._registry)
