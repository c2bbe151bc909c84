"""Writing result files atomically: a reader, or a run that was killed, never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def umask_mode(directory: bool = False) -> int:
    """The permissions `open()` / `mkdir()` give a new file (folder) under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A handle on a temporary file next to `path`, renamed over `path` when the block ends without an error and
    removed otherwise, so an earlier `path` survives a failed write whole. The file gets the umask's permissions,
    not the owner-only ones of `tempfile.mkstemp`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, umask_mode())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through `atomic_open`."""
    with atomic_open(path) as f:
        f.write(text)
