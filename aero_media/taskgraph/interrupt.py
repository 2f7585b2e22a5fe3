"""Ctrl-C during a doit run: one line and exit code 130, never a traceback.

While a run holds the checkout, SIGINT raises :class:`~aero_media.ctrlc.Interrupted` (a
``SystemExit(130)``) instead of ``KeyboardInterrupt``. It unwinds the same way (every temp
file is removed by the writers' cleanup, doit still saves the dep file of the tasks that
finished), but Python exits quietly on it instead of printing a traceback from wherever
the signal landed (a stage, doit's scheduler, a worker queue).

Once a Ctrl-C has reached the process, whatever goes wrong next comes of it: Python 3.11
wraps an exception raised in a class body's ``__set_name__`` (an ``Enum`` member made
during a lazy import) in ``RuntimeError``, a worker's queue closes under a reader with
``EBADF``. :func:`caused` tells such an exception, and the run reports it as the one
"interrupted" line and exit 130, never as a crash. Before a run starts and once the
interpreter is past the program (thread shutdown, ``atexit`` callbacks such as
filelock's), a Ctrl-C ends the process at once (:func:`aero_media.ctrlc.quit_now`).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from .. import ctrlc
from ..ctrlc import AGAIN, EXIT_CODE, MESSAGE, Interrupted

__all__ = ["AGAIN", "EXIT_CODE", "MESSAGE", "RESUME", "Interrupted", "caused", "install", "stop", "unwinding"]

RESUME = "run doit again to finish the build"
"""The fix for a build in a project, whose finished tasks doit has saved."""

_F = TypeVar("_F", bound=Callable[..., Any])
_depth = [0]  # handlers installed and not yet restored: the outermost one starts a fresh run

# Where a program's own stack begins: a script's or ``-c``'s top level, or runpy for ``-m``.
# Thread shutdown and ``atexit`` callbacks are called from C, with none of these below them.
_PROGRAM_BOTTOM = frozenset({"<module>", "_run_module_as_main", "_run_code"})


def _program_over(frame: FrameType | None) -> bool:
    """Whether the signal landed after the program returned (interpreter shutdown, ``atexit``)."""
    if frame is None:
        return True
    while frame.f_back is not None:
        frame = frame.f_back
    return frame.f_code.co_name not in _PROGRAM_BOTTOM


def install(fix: str = RESUME) -> Callable[[], None]:
    """Handle SIGINT as above until the returned function is called (main thread only; else a no-op).

    ``fix`` ends the message: a command building in a scratch project has nothing to resume.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    owner = os.getpid()
    if _depth[0] == 0:
        ctrlc.reset()
    _depth[0] += 1

    def on_sigint(_signum: int, frame: FrameType | None) -> None:
        ctrlc.mark()
        # doit's worker processes inherit the handler: only the parent prints.
        if _program_over(frame):
            if os.getpid() == owner:
                ctrlc.quit_now(fix)
            os._exit(EXIT_CODE)
        if os.getpid() == owner:
            ctrlc.say(fix)
        raise Interrupted

    previous: Any = signal.signal(signal.SIGINT, on_sigint)
    restored = [False]

    def restore() -> None:
        if not restored[0]:
            restored[0] = True
            _depth[0] -= 1
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, previous)

    return restore


def _chain_holds_ctrl_c(exc: BaseException) -> bool:
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, KeyboardInterrupt) or (isinstance(item, SystemExit) and item.code == EXIT_CODE):
            return True
        if isinstance(item, BaseExceptionGroup):
            todo.extend(item.exceptions)
        todo.extend((item.__cause__, item.__context__))
    return False


def caused(exc: BaseException | None = None) -> bool:
    """Whether a failure comes of Ctrl-C: this run was interrupted, or ``exc``'s chain holds one."""
    return ctrlc.happened() or (exc is not None and _chain_holds_ctrl_c(exc))


def stop(fix: str = RESUME) -> Interrupted:
    """The exception that ends an interrupted run, its line said (once per process)."""
    ctrlc.mark()
    ctrlc.say(fix)
    return Interrupted()


def unwinding(func: _F) -> _F:
    """``func``, with any exception that comes of Ctrl-C leaving it as :class:`Interrupted`."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Interrupted:
            raise
        except BaseException as exc:
            if caused(exc):
                raise stop() from None
            raise
    return wrapper  # type: ignore[return-value]
