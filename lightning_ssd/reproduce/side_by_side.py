"""Seeds side by side: each seed's stages as a process of its own, at most `jobs` at once.

The embedded benchmark's small models use a second torch thread poorly, so on a few cores seeds run faster side by
side at one thread each than one after another on every core (docs/baselines.md has the times). Each process writes
its own seed folder; their stage times merge into one timings.json (`plan.record_timing`); the report runs once,
after every seed's process ended.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def run_side_by_side(commands: Sequence[Sequence[str]], logs: Sequence[Path], jobs: int,
                     poll_s: float = 0.5) -> list[int]:
    """Runs `commands` (each one's output to its log), at most `jobs` at a time, in order; returns their exit codes.
    An interrupt stops every running command before it propagates."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    codes: list[int | None] = [None] * len(commands)
    running: dict[int, subprocess.Popen] = {}
    waiting = list(range(len(commands)))
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i = waiting.pop(0)
                logs[i].parent.mkdir(parents=True, exist_ok=True)
                with open(logs[i], "w") as log:
                    running[i] = subprocess.Popen(list(commands[i]), stdout=log, stderr=subprocess.STDOUT)
            for i, process in list(running.items()):
                if process.poll() is not None:
                    codes[i] = process.returncode
                    del running[i]
            if running:
                time.sleep(poll_s)
    except BaseException:
        for process in running.values():
            process.terminate()
        for process in running.values():
            process.wait()
        raise
    return [int(c) for c in codes if c is not None]
