"""Peak resident memory while a block runs (CPU: sampled RSS; CUDA: the allocator's peak)."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakMemory:
    """`.track()` blocks update `.peak_mb`: the peak RSS (or CUDA allocation) seen inside any of them."""

    def __init__(self, device: torch.device, interval_s: float = 0.002) -> None:
        self.device, self.interval_s = device, interval_s
        self.peak_mb = 0.0

    @contextmanager
    def track(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            yield self
            self.peak_mb = max(self.peak_mb, torch.cuda.max_memory_allocated(self.device) / 2**20)
            return
        peak = [_rss_bytes()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval_s):
                peak[0] = max(peak[0], _rss_bytes())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.peak_mb = max(self.peak_mb, max(peak[0], _rss_bytes()) / 2**20)
