"""A plan of stages that resumes: a stage whose outputs exist (and are newer than its inputs') is skipped.

Each stage declares the files that prove it finished. Stages write those files last, each through a temporary
file renamed into place (`lightning_ssd.files`), so an interrupted stage leaves no output that reads as
done, and the next run starts it again. A stage that raises is reported and the run goes on with every stage that
does not depend on it; `run_plan` raises `PlanFailed` at the end, and a rerun retries the failed stages only. Wall
times go to `timings.json` after every stage, merged into what the file holds then (under a lock), so that runs of
different seeds side by side keep each other's times.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_ssd.files import atomic_write_text

Log = Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    """One step of the plan.

    Attributes:
        name: shown in progress lines and used as the key in timings.json; unique in a plan.
        outputs: the files the stage writes last; all present (and newer than its dependencies' outputs) = done.
        run: does the work; must write every file of `outputs`.
        deps: stages that must be done before this one runs (earlier in the plan).
        optional_deps: stages whose outputs this one reads if they exist (a hook that may be unavailable);
            when they change, this stage is redone.
        estimate_min: expected wall time in minutes, for the estimate printed at the start.
        unavailable: returns why the stage cannot run now (e.g. a config another stage needs does not exist
            yet), or None; such a stage is skipped with that message and writes nothing.
        always: run on every run, outputs or not (a report: cheap, and the files it would skip on may be another
            run's, such as a report of fewer seeds).
    """

    name: str
    outputs: tuple[Path, ...]
    run: Callable[[], Any]
    deps: tuple[str, ...] = ()
    optional_deps: tuple[str, ...] = ()
    estimate_min: float = 0.0
    unavailable: Callable[[], str | None] | None = None
    always: bool = False


class PlanFailed(RuntimeError):
    """Some stages raised (or ended without their outputs); the message names them."""

    def __init__(self, failed: dict[str, str]) -> None:
        self.failed = failed
        lines = "\n".join(f"  {name}: {error}" for name, error in failed.items())
        super().__init__(f"{len(failed)} stage(s) failed; rerun the same command to retry them:\n{lines}")


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=float) + "\n")


def duration(seconds: float) -> str:
    """"2.1 min", or "14 s" under a minute."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _newest(paths: Sequence[Path]) -> int:
    return max((p.stat().st_mtime_ns for p in paths if p.exists()), default=0)


def is_done(stage: Stage, by_name: dict[str, Stage]) -> bool:
    """All outputs exist and none is older than an existing output of a stage it depends on (never for `always`)."""
    if stage.always or not stage.outputs or not all(p.exists() for p in stage.outputs):
        return False
    inputs = [p for d in (*stage.deps, *stage.optional_deps) for p in by_name[d].outputs]
    return min(p.stat().st_mtime_ns for p in stage.outputs) >= _newest(inputs)


def check_plan(stages: Sequence[Stage]) -> None:
    """Names are unique and every dependency is an earlier stage."""
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise ValueError(f"two stages are named {stage.name!r}")
        unknown = [d for d in (*stage.deps, *stage.optional_deps) if d not in seen]
        if unknown:
            raise ValueError(f"stage {stage.name!r} depends on {unknown}, which are not earlier in the plan")
        seen.add(stage.name)


def minutes(stages: Sequence[Stage]) -> float:
    """Estimated minutes of `stages` in all."""
    return sum(s.estimate_min for s in stages)


def pending_minutes(stages: Sequence[Stage]) -> float:
    """Estimated minutes of the stages that are not done yet."""
    by_name = {s.name: s for s in stages}
    return minutes([s for s in stages if not is_done(s, by_name)])


def _load_timings(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def record_timing(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Sets `name`'s entry of the timings file `path`, keeping every other entry, even one another process wrote
    since this one started (the read and the write happen under an exclusive lock on `path`.lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        atomic_write_json(path, {**_load_timings(path), name: entry})


def run_plan(stages: Sequence[Stage], timings_path: Path, log: Log = print) -> dict[str, str]:
    """Runs the stages in order, skipping those done; returns each stage's status (done, skipped, failed, ...).

    Raises:
        PlanFailed: after the last stage, when any stage raised or ended without writing its outputs.
    """
    check_plan(stages)
    by_name = {s.name: s for s in stages}
    status: dict[str, str] = {}
    failed: dict[str, str] = {}
    for i, stage in enumerate(stages, 1):
        head = f"[{i}/{len(stages)}] {stage.name} ..."
        reason = stage.unavailable() if stage.unavailable else None
        if reason:
            status[stage.name] = "unavailable"
            log(f"{head} skipped ({reason})")
            continue
        if is_done(stage, by_name):
            status[stage.name] = "skipped"
            log(f"{head} skipped (outputs exist)")
            continue
        missing = [d for d in stage.deps if status.get(d) not in ("done", "skipped")]
        if missing:
            status[stage.name] = "blocked"
            log(f"{head} not run (needs {', '.join(missing)})")
            continue
        log(head)
        error, seconds = _run_one(stage)
        record_timing(timings_path, stage.name, {"seconds": round(seconds, 2),
                                                 "status": "done" if error is None else "failed",
                                                 "estimate_min": stage.estimate_min})
        if error is None:
            status[stage.name] = "done"
            log(f"{head} done in {duration(seconds)}")
        else:
            status[stage.name] = "failed"
            failed[stage.name] = error
            log(f"{head} failed after {duration(seconds)}: {error}")
    if failed:
        raise PlanFailed(failed)
    return status


def _run_one(stage: Stage) -> tuple[str | None, float]:
    """Runs one stage; returns (None on success, else what went wrong; seconds). Tracebacks go to stderr."""
    start = time.perf_counter()
    try:
        stage.run()
    except Exception as err:  # one stage's failure must not stop the stages that do not need it
        traceback.print_exc(file=sys.stderr)
        return f"{type(err).__name__}: {err}", time.perf_counter() - start
    seconds = time.perf_counter() - start
    missing = [str(p) for p in stage.outputs if not p.exists()]
    return (f"finished without writing {', '.join(missing)}" if missing else None), seconds
