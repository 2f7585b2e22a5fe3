"""Ctrl-C during a doit run: one line and exit code 130, never a traceback.

While a run holds the checkout, SIGINT raises ``SystemExit(130)`` instead of
``KeyboardInterrupt``. It unwinds the same way (every temp file is removed by the
writers' cleanup, doit still saves the dep file of the tasks that finished), but
Python exits quietly on it instead of printing a traceback from wherever the
signal landed (a stage, doit's scheduler, a worker queue).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_CODE = 130
MESSAGE = "error: interrupted (Ctrl-C); every output is complete or absent, never partial; fix: {fix}"
RESUME = "run doit again to finish the build"
"""The fix for a build in a project, whose finished tasks doit has saved."""


def _say(text: str) -> None:
    """Write ``text`` to stderr from a signal handler.

    One write(2) on the descriptor, not through ``sys.stderr``: the signal may land while
    the main thread is inside a ``sys.stderr`` write (the "waiting for another build" line),
    and a second write into that buffered stream raises ``RuntimeError`` (reentrant call),
    which doit reported as a crash with exit 3. A stream without a descriptor (a test's
    capture) gets the text through ``write``; the exit code matters more than the line.
    """
    try:
        fd = sys.stderr.fileno()
    except (OSError, ValueError):
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            sys.stderr.write(text)
        return
    with contextlib.suppress(OSError):
        os.write(fd, text.encode())


def install(fix: str = RESUME) -> Callable[[], None]:
    """Handle SIGINT as above until the returned function is called (main thread only; else a no-op).

    ``fix`` ends the message: a command building in a scratch project has nothing to resume.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    owner = os.getpid()
    said = threading.Event()

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        # doit's worker processes inherit the handler: only the parent prints.
        if os.getpid() == owner and not said.is_set():
            said.set()
            _say(MESSAGE.format(fix=fix) + "\n")
        raise SystemExit(EXIT_CODE)

    previous: Any = signal.signal(signal.SIGINT, on_sigint)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)

    return restore
