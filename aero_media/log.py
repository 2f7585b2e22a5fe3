"""Messages and progress on stderr; results on stdout; a closed pipe ends quietly.

The one rule of every command and of doit: results (a build's summary, a command's
answer) go to stdout through :func:`result`; diagnostics, warnings, validation tables,
doit's task lines and progress go to stderr. So ``doit > out 2> err`` keeps the summary
in ``out``.

Progress on a terminal is a block of lines at the bottom, one per running step of this
process, redrawn together (two steps of ``doit -n 2 -P thread`` never draw over each
other); any other line printed meanwhile goes above the block. Off a terminal (a log,
CI) it is a plain line at most every :data:`PLAIN_INTERVAL` seconds, so a long step
shows it is alive and a short one stays out of the log.

A reader that goes away (``doit | head -1``, a closed stderr) is no error of the build:
the stream is pointed at the null device (as Python's documentation on SIGPIPE advises),
the run goes on to a complete or absent output, and ends with :data:`PIPE_EXIT`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

PIPE_EXIT = 141
"""The exit code once a reader closed stdout or stderr: 128 + SIGPIPE, what a shell shows for a program killed by it."""


def _stream() -> TextIO:
    # Looked up at call time: doit swaps sys.stderr while running an action.
    return sys.stderr


class _Pipe:
    """Whether this process wrote to a stream whose reader had gone."""

    closed = False


def pipe_closed() -> bool:
    """Whether stdout or stderr lost its reader in this process (the run then exits :data:`PIPE_EXIT`)."""
    return _Pipe.closed


def reset_pipe() -> None:
    """Forget a closed pipe: a new run begins (tests run many in one process)."""
    _Pipe.closed = False


def _is_gone(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EBADF))


def silence(stream: TextIO) -> None:
    """Remember that ``stream``'s reader is gone and send what follows to the null device.

    The descriptor is replaced, not closed: the interpreter flushes stdout and stderr when
    it exits, and a flush into a broken pipe prints "Exception ignored" and exits 120.
    """
    _Pipe.closed = True
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def write_to(stream: TextIO, text: str) -> None:
    """Write and flush ``text``; a reader that has gone silences the stream (:func:`silence`), it raises nothing."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) or _is_gone(exc):  # ValueError: the stream was closed in this process
            silence(stream)
            return
        raise


def result(text: str, stream: TextIO | None = None) -> None:
    """Print a result (a summary, a command's answer) on stdout (``stream``: the stdout a caller kept)."""
    write_to(sys.stdout if stream is None else stream, text if text.endswith("\n") else text + "\n")


def _emit(text: str) -> None:
    """Write whole lines to stderr, above the progress block when one is drawn."""
    with _BOARD.lock:
        stream = _stream()
        _BOARD.lift(stream)
        write_to(stream, text)
        _BOARD.redraw(stream)


def info(message: str) -> None:
    """Print an informational line."""
    _emit(message + "\n")


def warn(message: str) -> None:
    """Print a warning line."""
    _emit(f"warning: {message}\n")


def error(message: str) -> None:
    """Print an error line."""
    _emit(f"error: {message}\n")


def emit(text: str) -> None:
    """Write text made of whole lines (a table, doit's task lines) to stderr, above the progress block."""
    _emit(text)


def _is_tty(stream: TextIO) -> bool:
    if os.environ.get("AERO_MEDIA_PROGRESS") == "always":
        return True
    if os.environ.get("AERO_MEDIA_PROGRESS") == "never":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


PLAIN_INTERVAL = 10.0
"""Seconds between progress lines off a terminal (a log): one now and then, so a log shows a long step alive
and a short one stays out of it."""
BEAT = 0.25
"""How often :func:`working` looks whether a line is due."""
CLOCK: Callable[[], float] = time.monotonic
"""The clock of a :class:`Progress` made without one (looked up when it is made: a test sets its own)."""


def _width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` draws on, less one (a full line would wrap and break the block)."""
    try:
        return max(os.get_terminal_size(stream.fileno()).columns - 1, 20)
    except (AttributeError, OSError, ValueError):
        return 79


class _Board:
    """The progress lines of this process's running steps, drawn as one block at the bottom of a terminal.

    One lock for every write to stderr of this module: the block is erased (cursor up
    ``shown`` lines, clear to the end of the screen) before any other text is written,
    and redrawn below it after, so steps in threads each keep their own line.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.active: list[Progress] = []
        self.shown = 0
        """Lines of the block on the screen now; the cursor is at the start of the line below them."""

    def lift(self, stream: TextIO) -> None:
        """Erase the block (its steps stay active), so that other text takes its place."""
        if self.shown:
            write_to(stream, f"\x1b[{self.shown}F\x1b[J")
            self.shown = 0

    def redraw(self, stream: TextIO, now: float | None = None) -> None:
        """Draw every active step's line, each ended, in the order the steps started."""
        if not self.active:
            return
        width = _width(stream)
        lines = [p.text(p.clock() if now is None else now, False)[:width] for p in self.active]
        write_to(stream, "".join(line + "\x1b[K\n" for line in lines))
        self.shown = len(lines)

    def draw(self, stream: TextIO, progress: Progress, now: float, final: bool) -> None:
        """Redraw the block with ``progress`` in it; a ``final`` line is left above the block for good."""
        self.lift(stream)
        if final:
            if progress in self.active:
                self.active.remove(progress)
            write_to(stream, progress.text(now, True)[:_width(stream)] + "\x1b[K\n")
        elif progress not in self.active:
            self.active.append(progress)
        self.redraw(stream, now)


_BOARD = _Board()


class Progress:
    """Byte and file counter drawn on stderr at most every ``interval`` seconds.

    Call it as a ``(done, total)`` callback or use :meth:`advance`. On a TTY it shows
    bytes, files, rate and ETA on its own line of the block of running steps
    (:class:`_Board`); off a terminal (a log file, CI) the same text as plain lines, at
    most one every :data:`PLAIN_INTERVAL` seconds and only once the step has run that
    long. The percentage never passes 100: a file that grows while it is read raises
    the total shown. ``AERO_MEDIA_PROGRESS=never`` silences both. ``clock`` is for tests.
    """

    def __init__(self, label: str, total: int | None = None, interval: float = 0.2, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.files = 0
        self.note = ""
        """Free text shown after the counters (what a program reports of itself)."""
        self.clock = CLOCK if clock is None else clock
        self._start = self.clock()
        self._last: float | None = None
        mode = os.environ.get("AERO_MEDIA_PROGRESS")
        self._tty = _is_tty(_stream())
        self._enabled = mode != "never"
        # On a terminal the first draw is at once; in a log, a short step never shows.
        self.interval = interval if self._tty else PLAIN_INTERVAL

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self._draw()

    def advance(self, nbytes: int, files: int = 0) -> None:
        """Add ``nbytes`` bytes and ``files`` files to the counters."""
        self.done += nbytes
        self.files += files
        self._draw()

    def tell(self, note: str) -> None:
        """Show ``note`` (e.g. a program's own progress line) with the counters, when a line is due."""
        self.note = note.strip()
        self._draw()

    def beat(self) -> None:
        """Draw if a line is due, even without new counts (a step that cannot count shows it is alive)."""
        self._draw()

    def text(self, now: float, final: bool) -> str:
        """The step's line at ``now``: counted bytes of the total (at most 100%), files, rate, ETA, note."""
        elapsed = max(now - self._start, 1e-6)
        done = self.done
        rate = done / elapsed
        # A file that grows while it is read (or a server that sends more than it announced) passes its
        # first size: the total shown follows, so the line never claims more than 100%.
        total = max(self.total, done) if self.total else None
        parts = [f"{self.label}: {_human(done)}"]
        if total:
            parts[0] += f" / {_human(total)} ({min(100 * done // total, 100)}%)"
        if self.files:
            parts.append(f"{self.files} files")
        if done or total:
            parts.append(f"{_human(rate)}/s")
        else:  # nothing counted (a program at work): how long it has run instead
            parts[0] = f"{self.label}: {elapsed:.0f}s"
        if total and rate > 0 and not final:
            parts.append(f"ETA {(total - done) / rate:.0f}s")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def _draw(self, final: bool = False) -> None:
        if not self._enabled:
            return
        with _BOARD.lock:  # a heartbeat thread (working) and other steps' threads draw too
            now = self.clock()
            since = now - (self._start if self._last is None else self._last)
            stream = _stream()
            if self._tty:
                if not final and self._last is not None and since < self.interval:
                    return
                if final and self._last is None and self not in _BOARD.active and now - self._start < self.interval:
                    return  # never drawn, and over at once: nothing to leave on the screen
                self._last = now
                _BOARD.draw(stream, self, now, final)
                return
            # Plain lines in a log: none for a step shorter than the interval, its final state if it was longer.
            if final and self._last is None and now - self._start < self.interval:
                return
            if not final and since < self.interval:
                return
            self._last = now
            write_to(stream, self.text(now, final) + "\n")

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(final=True)


@contextmanager
def working(label: str, total: int | None = None, *, beat: float = BEAT) -> Iterator[Progress]:
    """A :class:`Progress` for a step that waits on a program: a thread looks every ``beat`` seconds whether a
    line is due, so a line comes at least every interval whether or not the step counts anything."""
    progress = Progress(label, total)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(beat):
            progress.beat()

    ticker = threading.Thread(target=tick, name=f"progress {label}", daemon=True)
    ticker.start()
    try:
        yield progress
    finally:
        stop.set()
        ticker.join()
        progress.close()
