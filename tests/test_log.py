"""Progress on stderr: redrawn in place on a terminal, a plain line now and then in a log, silent when told."""

from __future__ import annotations

import io
import threading

import pytest

from aero_media import log


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log_stream(monkeypatch: pytest.MonkeyPatch, mode: str | None = None) -> io.StringIO:
    out = io.StringIO()  # not a terminal, as a log file or CI is
    monkeypatch.setattr(log, "_stream", lambda: out)
    if mode is None:
        monkeypatch.delenv("AERO_MEDIA_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("AERO_MEDIA_PROGRESS", mode)
    return out


def test_off_a_terminal_a_long_step_prints_plain_lines_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _log_stream(monkeypatch)
    clock = _Clock()
    progress = log.Progress("hash win7.iso", 10 * 2**20, clock=clock)
    for t in (0.0, 0.5, 1.0, 1.4):
        clock.now = 100.0 + t
        progress.advance(2**20)
    assert out.getvalue() == ""  # not yet one interval long
    clock.now = 100.0 + log.PLAIN_INTERVAL
    progress.advance(2**20)
    clock.now += log.PLAIN_INTERVAL / 2
    progress.advance(2**20)  # too soon after the last line
    clock.now += log.PLAIN_INTERVAL / 2
    progress.advance(2**20)
    clock.now += 0.1
    progress.close()  # the final state, always, once the step was long
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert all(line.startswith("hash win7.iso: ") for line in lines)
    assert "5.0 MiB / 10.0 MiB (50%)" in lines[0] and "7.0 MiB" in lines[1] and "7.0 MiB" in lines[2]


def test_off_a_terminal_a_short_step_stays_out_of_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _log_stream(monkeypatch)
    clock = _Clock()
    progress = log.Progress("copy boot.wim", 100, clock=clock)
    progress.advance(100)
    clock.now += log.PLAIN_INTERVAL / 2
    progress.close()
    assert out.getvalue() == ""


def test_never_silences_and_a_terminal_still_redraws_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _log_stream(monkeypatch, "never")
    clock = _Clock()
    progress = log.Progress("x", 10, clock=clock)
    clock.now += 10
    progress.advance(5)
    progress.close()
    assert out.getvalue() == ""
    out = _log_stream(monkeypatch, "always")
    progress = log.Progress("x", 10, clock=clock)
    progress.advance(5)  # at once on a terminal
    progress.close()
    assert out.getvalue().startswith("\rx: 5 B / 10 B (50%)") and out.getvalue().endswith("\x1b[K\n")
    assert out.getvalue().count("\r") == 2


def test_a_step_that_counts_nothing_still_prints_a_line_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program that prints nothing (hivexregedit): the heartbeat draws how long it has run, with its last note."""
    lines: list[str] = []
    seen = threading.Event()

    class Log(io.StringIO):
        def write(self, text: str) -> int:
            lines.append(text)
            if len(lines) >= 2:
                seen.set()
            return len(text)

    stream = Log()
    monkeypatch.setattr(log, "_stream", lambda: stream)
    monkeypatch.delenv("AERO_MEDIA_PROGRESS", raising=False)
    monkeypatch.setattr(log, "PLAIN_INTERVAL", 0.0)  # every beat is due: the test waits on lines, not on time
    with log.working("edit hives of install.wim image 1", beat=0.001) as progress:
        progress.tell("Archiving file data: 1 MiB of 2 MiB (50%) done")
        assert seen.wait(60), "no heartbeat line while the step ran"  # a fake slow step: it ends when lines came
    assert all(line.startswith("edit hives of install.wim image 1: ") and line.endswith("\n") for line in lines)
    assert "(50%) done" in lines[-1]
