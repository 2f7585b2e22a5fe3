"""Shared fixtures: repo paths and the optional real upstream data (docs/upstream.md#real-upstream-test-data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lib.needs import need

# Fixtures that live in tests/lib (http_serve: a local HTTP server with Range support).
pytest_plugins = ["tests.lib.httpserver"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALDATA = SHARED / "realdata"


@pytest.fixture(scope="session")  # session: module fixtures that build from it (a whole Aero build) may use it
def realdata() -> Path:
    """Path to the real upstream files; skips the test when they are absent (fails in CI, where they must be there)."""
    need("realdata", None if REALDATA.is_dir() else
         f"needs real upstream files in {REALDATA}, which is absent")
    return REALDATA


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's ~/.cache: each worker gets a cache folder of its own."""
    monkeypatch.setenv("AERO_MEDIA_CACHE", str(tmp_path_factory.getbasetemp() / "aero-media-cache"))


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """No progress lines unless a test asks for them: a slow step on a busy machine must not add stderr lines
    that a test counts (tests of progress set or clear AERO_MEDIA_PROGRESS themselves)."""
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "never")


@pytest.fixture(autouse=True)
def _fresh_ctrl_c_state() -> None:
    """Each test starts as a fresh process would: no Ctrl-C remembered, no run's handler still counted.

    A process remembers its Ctrl-C for good (a later failure is reported as the interrupt), which is
    right for a command and wrong for the next test an xdist worker runs in the same process.
    """
    from aero_media import ctrlc
    from aero_media.taskgraph import interrupt

    ctrlc.reset()
    interrupt._depth[0] = 0


@pytest.fixture
def kernel_copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte count of every ``os.copy_file_range`` call the test makes (data that never entered user space)."""
    if not hasattr(os, "copy_file_range"):
        pytest.skip("os.copy_file_range is Linux-only")
    real, moved = os.copy_file_range, []

    def spying(src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None) -> int:
        done = real(src, dst, count, offset_src, offset_dst)
        moved.append(done)
        return done

    monkeypatch.setattr(os, "copy_file_range", spying)
    return moved
