"""The build lock and Ctrl-C: an interrupt never lands inside filelock's own bookkeeping."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from aero_media import buildlock


class Interrupted(Exception):
    """What this test's SIGINT handler raises, as doit's run raises SystemExit(130)."""


@pytest.fixture
def raising_handler() -> Iterator[None]:
    """A SIGINT handler that raises, as every handler of ours does (the test must not depend on pytest's)."""
    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGINT, on_sigint)
    yield
    signal.signal(signal.SIGINT, previous)


def _ctrl_c_inside(lock: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``lock.<name>`` receive a SIGINT half-way through; returns what it managed to finish."""
    real = getattr(lock, name)
    finished: list[str] = []

    def with_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C here, inside the library
        result = real(*args, **kwargs)
        finished.append(name)  # the library's bookkeeping ran to its end
        return result

    monkeypatch.setattr(lock, name, with_ctrl_c)
    return finished


@pytest.mark.usefixtures("raising_handler")
def test_ctrl_c_inside_acquire_is_handled_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = tmp_path / "build"
    build.mkdir()
    finished = _ctrl_c_inside(buildlock._lock_for(build), "acquire", monkeypatch)
    try:
        with pytest.raises(Interrupted):
            buildlock.acquire(build, buildlock.LockPolicy.FAIL)
        assert finished == ["acquire"]
    finally:
        monkeypatch.undo()
        buildlock.release(build)
    assert not buildlock._lock_for(build).is_locked


@pytest.mark.usefixtures("raising_handler")
def test_ctrl_c_inside_release_is_handled_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = tmp_path / "build"
    buildlock.acquire(build, buildlock.LockPolicy.FAIL)
    finished = _ctrl_c_inside(buildlock._lock_for(build), "release", monkeypatch)
    with pytest.raises(Interrupted):
        buildlock.release(build)
    assert finished == ["release"]
    assert not buildlock._lock_for(build).is_locked


def test_an_ignored_ctrl_c_is_not_turned_into_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with SIGINT ignored (nohup, a background job): held back, it stays ignored."""
    build = tmp_path / "build"
    build.mkdir()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        finished = _ctrl_c_inside(buildlock._lock_for(build), "acquire", monkeypatch)
        buildlock.acquire(build, buildlock.LockPolicy.FAIL)
        assert finished == ["acquire"] and buildlock._lock_for(build).is_locked
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
        monkeypatch.undo()
        buildlock.release(build)
