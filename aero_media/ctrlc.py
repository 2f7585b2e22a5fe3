"""Ctrl-C where nothing needs unwinding: one line, exit 130, at once; and what a process knows of its Ctrl-C.

This module is the first code of every process started through :mod:`aero_media.entry`, so
it imports only modules Python has loaded before any program starts (``os``, ``sys``,
``contextlib``) and the builtin ``signal``: the time in which Ctrl-C still means Python's
own traceback is as short as it can be. A run then installs its raising handler
(:mod:`aero_media.taskgraph.interrupt`) for as long as it has something to unwind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

TYPE_CHECKING = False  # not typing's: importing typing alone would take longer than the rest of this module
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

EXIT_CODE = 130
MESSAGE = "error: interrupted (Ctrl-C); every output is complete or absent, never partial; fix: {fix}"
AGAIN = "run the command again"
"""The fix when nothing has been built yet, or the build is over."""


class Interrupted(SystemExit):
    """Ctrl-C unwinding a run: a ``SystemExit`` (Python exits on it without a traceback), code 130."""

    def __init__(self) -> None:
        super().__init__(EXIT_CODE)


class _State:
    """Whether this process was interrupted, and whether its one line was written."""

    happened = False
    said = False


def happened() -> bool:
    """Whether a Ctrl-C reached this process since its run began."""
    return _State.happened


def mark() -> None:
    """Remember that a Ctrl-C reached this process."""
    _State.happened = True


def reset() -> None:
    """Forget any earlier Ctrl-C: a new run begins (tests run many in one process)."""
    _State.happened = _State.said = False


def say(fix: str = AGAIN) -> None:
    """Write the one "interrupted" line to stderr, unless this process has written it already.

    One write(2) on the descriptor, not through ``sys.stderr``: the signal may land while
    the main thread is inside a ``sys.stderr`` write, and a second write into that buffered
    stream raises ``RuntimeError`` (reentrant call). A stream without a descriptor (a
    test's capture) gets the text through ``write``; the exit code matters more than the line.
    """
    if _State.said:
        return
    _State.said = True
    text = MESSAGE.format(fix=fix) + "\n"
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        with contextlib.suppress(AttributeError, RuntimeError, OSError, ValueError):
            sys.stderr.write(text)
        return
    with contextlib.suppress(OSError):
        os.write(fd, text.encode())


def quit_now(fix: str = AGAIN) -> NoReturn:
    """Say the line and end the process with 130 now, skipping the interpreter's shutdown.

    Only where nothing is being written: before a run starts (imports) or after it ended.
    Whatever the program printed is flushed first; a stream the signal caught mid-write
    refuses (``RuntimeError``) and keeps its tail rather than risk a second error.
    """
    mark()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # any failure here must not stop the exit
            stream.flush()
    say(fix)
    os._exit(EXIT_CODE)


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    quit_now()


def install_quiet() -> None:
    """Handle SIGINT with :func:`quit_now` from here on (main thread only: else nothing)."""
    with contextlib.suppress(ValueError):  # not the main thread: Python runs handlers there only anyway
        signal.signal(signal.SIGINT, _on_sigint)
