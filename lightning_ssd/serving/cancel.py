"""Cancellations broadcast to every inference worker: a ring of request ids in shared memory.

LitServe's request queue is shared by its workers and cannot address one of them, so a cancellation sent through it
could reach a worker that does not hold the request. Instead the HTTP process posts the request's id here, and every
worker reads the ids posted since its last look at each tick: the worker holding the request frees its row; a
request still waiting in LitServe's queue is dropped by whichever worker takes it later. Reading costs no message
and no system call.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid

SIZE = 4096  # ids kept; a worker that falls further behind than this misses the oldest ones


class CancelBoard:
    """Posted request ids (LitServe's uuid4 strings), in order; any number of writers and readers."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._ids = ctx.RawArray("c", 16 * SIZE)
        self._count = ctx.Value("q", 0)

    def post(self, uid: str) -> None:
        with self._count.get_lock():
            i = self._count.value % SIZE
            self._ids[16 * i : 16 * (i + 1)] = uuid.UUID(uid).bytes
            self._count.value += 1  # after the id is written: a reader never sees a half-written slot

    def read(self, cursor: int) -> tuple[list[str], int]:
        """The ids posted since `cursor` (a count returned by an earlier read; 0 at first), and the new cursor."""
        with self._count.get_lock():
            count = self._count.value
        ids = []
        for n in range(max(cursor, count - SIZE), count):
            i = n % SIZE
            ids.append(str(uuid.UUID(bytes=bytes(self._ids[16 * i : 16 * (i + 1)]))))
        return ids, count
