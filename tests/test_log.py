"""Progress on stderr: redrawn in place on a terminal, a plain line now and then in a log, silent when told."""

from __future__ import annotations

import io
import threading
from pathlib import Path

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
    # Drawn at once, then erased (cursor up one line, clear below) and replaced by its final state.
    assert out.getvalue().startswith("x: 5 B / 10 B (50%)") and out.getvalue().endswith("\x1b[K\n")
    assert out.getvalue().count("\x1b[1F\x1b[J") == 1 and "\r" not in out.getvalue()


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


class _Screen:
    """A terminal as far as progress drives one: text, newline, cursor up N lines to column 0 (ESC[NF), clear to
    the end of the screen (ESC[J) and of the line (ESC[K). What is left on it is what a person sees."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = self.col = 0
        self.raw = ""

    def write(self, text: str) -> int:
        import re

        self.raw += text
        for token in re.findall(r"\x1b\[\d*[A-Za-z]|\n|[^\x1b\n]+", text):
            line = self.lines[self.row]
            if token == "\n":
                self.row, self.col = self.row + 1, 0
                if self.row == len(self.lines):
                    self.lines.append("")
            elif token.startswith("\x1b["):
                code, arg = token[-1], token[2:-1]
                if code == "F":
                    self.row, self.col = max(self.row - int(arg or 1), 0), 0
                elif code == "J":
                    self.lines[self.row + 1:] = []
                    self.lines[self.row] = line[:self.col]
                elif code == "K":
                    self.lines[self.row] = line[:self.col]
                else:
                    raise AssertionError(f"unexpected escape {token!r}")
            else:
                self.lines[self.row] = line[:self.col] + token + line[self.col + len(token):]
                self.col += len(token)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def shown(self) -> list[str]:
        return [line for line in self.lines if line]


def test_on_a_terminal_two_steps_in_threads_each_keep_their_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """doit -n 2 -P thread: two steps draw at once; each keeps one line, other text goes above the block."""
    screen = _Screen()
    monkeypatch.setattr(log, "_stream", lambda: screen)
    monkeypatch.delenv("AERO_MEDIA_PROGRESS", raising=False)
    clock = _Clock()
    steps = [log.Progress(name, 1000, interval=0.0, clock=clock) for name in ("hash a.iso", "write b.iso")]
    start = threading.Barrier(2)

    def work(step: log.Progress) -> None:
        start.wait()
        for _ in range(200):
            step.advance(5)

    threads = [threading.Thread(target=work, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.info("Wrote c.iso")
    shown = screen.shown()
    assert shown[0] == "Wrote c.iso" and len(shown) == 3, shown
    assert sorted(line.split(":")[0] for line in shown[1:]) == ["hash a.iso", "write b.iso"]
    assert all("1000 B / 1000 B (100%)" in line for line in shown[1:]), shown
    steps[0].close()
    steps[1].close()
    assert screen.shown()[0] == "Wrote c.iso" and len(screen.shown()) == 3  # the final lines stay, once each
    assert "\r" not in screen.raw


def test_off_a_terminal_a_line_comes_every_ten_seconds_with_done_total_and_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = _log_stream(monkeypatch)
    assert log.PLAIN_INTERVAL == 10
    clock = _Clock()
    progress = log.Progress("download virtio-win.iso", 100 * 2**20, clock=clock)
    clock.now += 9.9
    progress.advance(10 * 2**20)
    assert out.getvalue() == ""  # a step shorter than ten seconds stays out of the log
    clock.now += 0.1
    progress.advance(10 * 2**20)
    assert out.getvalue() == "download virtio-win.iso: 20.0 MiB / 100.0 MiB (20%), 2.0 MiB/s, ETA 40s\n"


def test_progress_never_passes_100_percent_not_even_for_a_file_that_grows_while_hashed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import re

    from aero_media.fsutil import sha256_file

    out = _log_stream(monkeypatch, "always")
    clock = _Clock()
    grown = tmp_path / "growing.iso"
    grown.write_bytes(b"x" * 1000)
    progress = log.Progress("hash growing.iso", grown.stat().st_size, interval=0.0, clock=clock)

    def count(n: int) -> None:
        if progress.done == 0:  # the writer appends while the hash runs
            with open(grown, "ab") as fp:
                fp.write(b"y" * 5000)
        clock.now += 1
        progress.advance(n)

    sha256_file(grown, count)
    progress.close()
    assert progress.done == 6000
    percents = [int(p) for p in re.findall(r"\((\d+)%\)", out.getvalue())]
    assert percents and max(percents) == 100 and all(p <= 100 for p in percents)
    assert "ETA -" not in out.getvalue()


def test_a_closed_stderr_silences_messages_and_progress_and_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    r, w = os.pipe()
    os.close(r)  # the reader has gone before anything is written
    stream = os.fdopen(w, "w")
    monkeypatch.setattr(log, "_stream", lambda: stream)
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "always")
    log.reset_pipe()
    try:
        log.warn("a warning nobody reads")  # no BrokenPipeError
        assert log.pipe_closed()
        progress = log.Progress("x", 10)
        progress.advance(10)
        progress.close()
        log.info("still quiet")
    finally:
        log.reset_pipe()
        stream.close()
