"""Ending a finished process without the interpreter's teardown.

Once a program's exit code is known and every output is closed, what CPython still does
is its finalization: the ``atexit`` callbacks, a flush of stdout and stderr, and then the
teardown of every module and object and the unmapping of its memory, a tenth of a second
after a cold build that writes nothing. :func:`end` does the first two itself, in the
interpreter's order, and skips the teardown with ``os._exit``. Nothing of ours relies on
it: our writers close their files explicitly, the dep file is saved before the run's
report, and the work that must happen at exit (multiprocessing joining its workers,
:mod:`aero_media.lifetime`'s stop of the ones left, filelock's release, ``weakref.finalize``)
is registered with ``atexit``, which :func:`end` runs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from . import ctrlc, log

FLUSH_FAILED = 120
"""The code CPython exits with when flushing stdout or stderr fails at exit (Py_FinalizeEx)."""


def can_end() -> bool:
    """Whether :func:`end` may be called now: from the main thread, with no other thread the interpreter would wait for.

    At exit, CPython joins every non-daemon thread before the ``atexit`` callbacks (and some,
    such as ``concurrent.futures``' workers, only stop once its own exit hooks have run):
    a process with one alive takes the interpreter's way out.
    """
    main = threading.main_thread()
    if threading.current_thread() is not main:
        return False
    return not any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def end(code: int, fix: str = ctrlc.AGAIN) -> NoReturn:
    """Run the ``atexit`` callbacks, flush stdout and stderr, and end the process with ``code``.

    A Ctrl-C from here on ends the process at once, as one while the interpreter shuts
    down does (:func:`aero_media.ctrlc.quit_now`, with ``fix`` in its line): the program's
    frames are still below the callbacks, so a raising handler would raise inside one and
    Python would print it as "Exception ignored". A reader of stdout or stderr that has
    gone makes the code :data:`aero_media.log.PIPE_EXIT`, as it does for a whole run.
    """

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        ctrlc.quit_now(fix)

    with contextlib.suppress(ValueError):  # not the main thread: the caller checked can_end()
        signal.signal(signal.SIGINT, on_sigint)
    # What Py_FinalizeEx calls once the threads are joined (can_end: none to join); an exception in a
    # callback is printed and the rest still run, as there.
    atexit._run_exitfuncs()
    # The interpreter flushes sys.stdout and sys.stderr, and the originals when it frees them (a run may
    # leave a capture of its own in their place: doit's under -P thread).
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for i, stream in enumerate(streams):
        if stream is None or stream in streams[:i]:  # none (pythonw), or flushed already
            continue
        try:
            log.write_to(stream, "")  # a flush; a reader that has gone is remembered, never raised
        except OSError:  # a stream that cannot take its tail (a full disk): the interpreter's code
            code = code or FLUSH_FAILED
    os._exit(log.PIPE_EXIT if log.pipe_closed() else code)
