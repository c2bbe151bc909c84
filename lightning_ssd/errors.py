"""Errors a user caused, and how the command line reports them.

A `UserError` is a wrong flag, file or config key: its message names it as the user typed it and says what to do.
`python -m lightning_ssd ...` prints such an error as one line, `lightning_ssd <command>: error: <message>`, and exits
with status 2; `--verbose` (anywhere on the command line) or `LIGHTNING_SSD_VERBOSE=1` prints the traceback first.
Under LightningCLI an error raised while a class is built from the config reaches the top wrapped in jsonargparse's
"Does not validate against any of the Union subtypes"; the wrapped error is found through the exception's causes. A
plain `ValueError` raised there by a constructor is taken, as jsonargparse takes it, for a value of the config that
does not validate, and reported as a user error too. Any other exception is a bug and keeps its full traceback; when
jsonargparse wrapped it, its own first line is repeated under the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

VERBOSE_ENV = "LIGHTNING_SSD_VERBOSE"
VERBOSE_HELP = f"on an error, print the traceback too (also: {VERBOSE_ENV}=1)"
USER_ERROR_STATUS = 2


class UserError(Exception):
    """An error in what the user gave (a flag, a file, a config key); reported as one line, without a traceback."""


class UsageError(UserError, ValueError):
    """A command-line flag or config value that cannot work; the message names it and says what to do."""


def verbose_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether `--verbose` is in `argv` or set in the environment, and `argv` without it."""
    rest = [a for a in argv if a != "--verbose"]
    verbose = len(rest) < len(argv) or os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # processes started by this one (DDP ranks) report the same way
    return verbose, rest


_JSONARGPARSE_WRAPPERS = ("Does not validate against any of the Union subtypes", "Problem with given class_path")


def user_error_in(exc: BaseException) -> Exception | None:
    """The first `UserError` among `exc` and the exceptions it was raised from or while handling; else a plain
    `ValueError` that a class's constructor raised while jsonargparse built it from the config."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    wrapped = any(str(e).startswith(_JSONARGPARSE_WRAPPERS) for e in chain)
    root = chain[-1] if chain else None
    return root if wrapped and type(root) is ValueError else None


@contextmanager
def reported(command: str, verbose: bool) -> Iterator[None]:
    """Runs the block; a user's error (see `user_error_in`) is printed as one line and ends the process with status
    2, after its traceback when `verbose`. Any other exception keeps its traceback; when it wraps another one (as
    jsonargparse does), the wrapped error's first line follows the traceback and the status is 1."""
    try:
        yield
    except Exception as exc:
        error = user_error_in(exc)
        stream = sys.stderr
        if error is None:
            cause = _root_cause(exc)
            if cause is exc:
                raise
            traceback.print_exception(exc, file=stream)
            line = (str(cause).strip().splitlines() or [""])[0]
            print(f"lightning_ssd {command}: unexpected error, traceback above: {type(cause).__name__}: {line}",
                  file=stream, flush=True)
            raise SystemExit(1) from None
        if verbose:
            traceback.print_exception(exc, file=stream)
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"lightning_ssd {command}: error: {message}", file=stream, flush=True)
        raise SystemExit(USER_ERROR_STATUS) from None


def _root_cause(exc: BaseException) -> BaseException:
    """The exception at the bottom of `exc`'s chain of explicit causes (`raise ... from`)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


class ToolParser(argparse.ArgumentParser):
    """An argparse parser whose errors are `UsageError`s (one line naming the flag), with a `--verbose` flag."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type`: an integer >= `minimum` (argparse puts the flag in front of the message)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
        return number

    return parse
