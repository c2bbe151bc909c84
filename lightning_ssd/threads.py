"""CPU threads for torch: one `--threads` flag for every command, one rule for its default.

The default is measured, not guessed. On a 2-core CPU with the embedded default (base-llava trained by `make demo`,
`bench --draft 6 --num-samples 24 --batch-size 1 --batch-size 8`, quiet machine):

    threads  greedy, batch 1   SSD, batch 1       greedy, batch 8   SSD, batch 8
    1        231 tok/s         545 tok/s (2.37x)  1172 tok/s        1763 tok/s (1.50x)
    2        205 tok/s         402 tok/s (1.96x)   847 tok/s        1438 tok/s (1.70x)

With one other job on the same 2 cores, `generate` decoded 5 tokens/s with 2 threads against 1038 with 1: OpenMP
threads spin waiting for the core the other job holds. Rechecked on 2026-12-06 on the same kind of machine while
other people's jobs kept its load average between 2 and 14: `bench --backbone base-llava --redundant-deep-layers
--draft 6 --num-samples 8 --repeats 3` (random weights, deep layers zeroed so that tau = 6.2), three runs per
count, taken in turn. `--threads 1` finished each run in 34-91 s: greedy 86, 40 and 106 tok/s, SSD 162, 86 and
239 tok/s (1.88x, 2.16x, 2.25x). `--threads 2` finished one run of three within 400 s, in 375 s: greedy 6.3
tok/s, SSD 12.2 tok/s (1.49x); the other two were stopped at 400 s, their first repeats having decoded greedy at
4.0 and 9.7 tok/s and SSD at 4.9 and 8.7 tok/s.

One thread per free core is the most that pays, and on two cores one thread is faster even when nothing else runs.
Hence the rule: half the cores this process may run on, no more than the cores the load average leaves free, and
at least 1. That is 1 on a 2-core machine, quiet or busy. Above 2 cores the rule is not measured; `--threads N`
chooses, `--threads 0` leaves torch's count alone (torch's own default is one thread per physical core), and an
`OMP_NUM_THREADS` set in the environment is kept as torch read it.

Inter-op threads are left alone: eager decoding does not use that pool, and torch lets a process set it only once,
before any parallel work, which a function called from a notebook or a test cannot promise.
"""

from __future__ import annotations

import argparse
import math
import os

from lightning_ssd.errors import UsageError

THREADS_HELP = ("torch CPU threads (default: half the free cores, at least 1, so 1 on a 2-core machine, where 2 "
                "threads decode slower, and far slower beside another job; OMP_NUM_THREADS, when set, is kept; 0: "
                "leave torch's count alone)")


def _threads(value: str) -> int:
    try:
        threads = int(value)
    except ValueError:
        threads = -1
    if threads < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0: leave torch's count alone), got {value!r}")
    return threads


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Adds `--threads` to an argparse parser (read it back with `set_threads(args.threads)`)."""
    parser.add_argument("--threads", type=_threads, default=None, help=THREADS_HELP)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """Half of `cores`, capped by the cores that `load` (the 1-minute load average) leaves free, at least 1."""
    cores = usable_cores() if cores is None else cores
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores // 2, cores - math.ceil(load)))


def set_threads(threads: int | None) -> int:
    """Sets torch's intra-op CPU threads and returns the number torch now uses.

    Args:
        threads: the count to use; 0 leaves torch's count alone; None applies `default_threads()`, unless
            `OMP_NUM_THREADS` is set in the environment, in which case torch keeps the count it read from it.
    """
    if threads is not None and threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: leave torch's count alone), got {threads}")
    import torch

    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = default_threads()
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def threads_args() -> list[str]:
    """`--threads N` with this process's current count, for a stage this process runs through the LightningCLI, so
    that the stage keeps the count its parent command chose."""
    import torch

    return ["--threads", str(torch.get_num_threads())]
