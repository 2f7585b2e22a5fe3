"""Messages and progress on stderr.

Library code never prints to stdout: results go to files, humans read stderr.
Progress redraws in place on a TTY and stays quiet otherwise (CI logs).
"""

from __future__ import annotations

import os
import sys
import time
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


class Progress:
    """Byte and file counter drawn on stderr at most every ``interval`` seconds.

    Call it as a ``(done, total)`` callback or use :meth:`advance`. Shows bytes,
    files, rate and ETA on a TTY; prints nothing when stderr is not a terminal.
    """

    def __init__(self, label: str, total: int | None = None, interval: float = 0.2) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.files = 0
        self.interval = interval
        self._start = time.monotonic()
        self._last = 0.0
        self._enabled = _is_tty(_stream())

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

    def _draw(self, final: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        rate = self.done / elapsed
        parts = [f"{self.label}: {_human(self.done)}"]
        if self.total:
            parts[0] += f" / {_human(self.total)} ({100 * self.done / self.total:.0f}%)"
        if self.files:
            parts.append(f"{self.files} files")
        parts.append(f"{_human(rate)}/s")
        if self.total and rate > 0 and not final:
            parts.append(f"ETA {max(self.total - self.done, 0) / rate:.0f}s")
        _stream().write("\r" + ", ".join(parts) + "\x1b[K" + ("\n" if final else ""))
        _stream().flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(final=True)
