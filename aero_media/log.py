"""Messages and progress on stderr.

Library code never prints to stdout: results go to files, humans read stderr.
Progress redraws in place on a TTY; off a terminal (a log, CI) it is a plain line now and
then, so a long step shows it is alive and a short one stays out of the log.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def _stream() -> TextIO:
    # Looked up at call time: doit swaps sys.stderr while running an action.
    return sys.stderr


def info(message: str) -> None:
    """Print an informational line."""
    print(message, file=_stream(), flush=True)


def warn(message: str) -> None:
    """Print a warning line."""
    print(f"warning: {message}", file=_stream(), flush=True)


def error(message: str) -> None:
    """Print an error line."""
    print(f"error: {message}", file=_stream(), flush=True)


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


PLAIN_INTERVAL = 1.5
"""Seconds between progress lines off a terminal (a log): one now and then, so a log shows a long step alive
and a short one stays out of it."""
BEAT = 0.25
"""How often :func:`working` looks whether a line is due."""


class Progress:
    """Byte and file counter drawn on stderr at most every ``interval`` seconds.

    Call it as a ``(done, total)`` callback or use :meth:`advance`. On a TTY it shows
    bytes, files, rate and ETA, redrawn in place; off a terminal (a log file, CI) the
    same text as plain lines, at most one every :data:`PLAIN_INTERVAL` seconds and
    only once the step has run that long. ``AERO_MEDIA_PROGRESS=never`` silences both.
    ``clock`` is for tests.
    """

    def __init__(self, label: str, total: int | None = None, interval: float = 0.2, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.files = 0
        self.note = ""
        """Free text shown after the counters (what a program reports of itself)."""
        self._clock = clock
        self._start = clock()
        self._last: float | None = None
        self._lock = threading.Lock()
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

    def _text(self, now: float, final: bool) -> str:
        elapsed = max(now - self._start, 1e-6)
        rate = self.done / elapsed
        parts = [f"{self.label}: {_human(self.done)}"]
        if self.total:
            parts[0] += f" / {_human(self.total)} ({100 * self.done / self.total:.0f}%)"
        if self.files:
            parts.append(f"{self.files} files")
        if self.done or self.total:
            parts.append(f"{_human(rate)}/s")
        else:  # nothing counted (a program at work): how long it has run instead
            parts[0] = f"{self.label}: {elapsed:.0f}s"
        if self.total and rate > 0 and not final:
            parts.append(f"ETA {max(self.total - self.done, 0) / rate:.0f}s")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def _draw(self, final: bool = False) -> None:
        if not self._enabled:
            return
        with self._lock:  # a heartbeat thread (working) draws too
            now = self._clock()
            since = now - (self._start if self._last is None else self._last)
            if self._tty:
                if not final and self._last is not None and since < self.interval:
                    return
                line = "\r" + self._text(now, final) + "\x1b[K" + ("\n" if final else "")
            else:
                # Plain lines in a log: none for a step shorter than the interval, its final state if it was longer.
                if final and self._last is None and now - self._start < self.interval:
                    return
                if not final and since < self.interval:
                    return
                line = self._text(now, final) + "\n"
            self._last = now
            _stream().write(line)
            _stream().flush()

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
