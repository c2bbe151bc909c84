"""Stages side by side: each seed's stages split into lanes that share no dependency, each lane a process of its own,
at most `jobs` at once.

The embedded benchmark's small models use a second torch thread poorly, so on a few cores stages run faster side by
side at one thread each than one after another on every core (docs/baselines.md has the times). A seed's stages
form chains that share nothing (each task block's fine-tune and what it feeds); `lanes` deals these chains into
`jobs` lanes of about equal estimated time, so that one seed alone also uses every job. Each process writes its own
stages' files; their stage times merge into one timings.json (`plan.record_timing`); the report runs once, after
every process ended.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lightning_ssd.reproduce.plan import Stage, minutes


def lanes(stages: Sequence[Stage], count: int) -> list[list[Stage]]:
    """`stages` dealt into at most `count` lanes that share no dependency, each in plan order: the dependency graph's
    connected components, the longest estimate first, each to the lane with the least estimated time so far. Empty
    lanes are left out; a lane can run as a plan of its own."""
    if count < 1:
        raise ValueError(f"--jobs must be >= 1, got {count}")
    parent = {s.name: s.name for s in stages}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for stage in stages:
        for dep in (*stage.deps, *stage.optional_deps):
            if dep in parent:
                parent[root(dep)] = root(stage.name)
    components: dict[str, list[Stage]] = {}
    for stage in stages:
        components.setdefault(root(stage.name), []).append(stage)
    dealt: list[list[Stage]] = [[] for _ in range(count)]
    for component in sorted(components.values(), key=lambda c: -minutes(c)):
        min(dealt, key=minutes).extend(component)
    order = {s.name: i for i, s in enumerate(stages)}
    return [sorted(lane, key=lambda s: order[s.name]) for lane in dealt if lane]


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
