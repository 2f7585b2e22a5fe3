"""doit as a real process, for tests whose behaviour is about processes: locks, signals, full disks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.lib.project import REPO


def doit_argv(project: Path, *args: str) -> list[str]:
    """The command line of ``doit`` on our dodo file, run in ``project``."""
    return [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "--dir", str(project), *args]


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment (its private cache) plus ``extra``; progress bars off."""
    env = dict(os.environ, AERO_MEDIA_PROGRESS="never")
    env.pop("AERO_MEDIA_LOCK", None)
    env.update(extra)
    return env


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120,
        ) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output."""
    # From the checkout, as a user runs doit: its pyproject.toml hands doit our task loader.
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env or child_env(),
                          cwd=REPO)


def userns_prefix(*, root: bool) -> list[str]:
    """``unshare`` into a user and mount namespace (``root``: as root inside it, else as ``nobody``).

    That is how a test gets a full or read-only file system, or a folder its owner
    cannot write, without privileges. Skips where user namespaces are disabled: a
    kernel setting, not a tool CI installs.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux)")
    prefix = [unshare, "-rm"] if root else [unshare, "-U", "--map-user=65534", "--map-group=65534"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode(errors='replace').strip()}")
    return prefix


def mounted(mount_script: str, target: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside a fresh mount namespace after ``mount_script`` ($0 is ``target``)."""
    return [*userns_prefix(root=True), "sh", "-c", f'{mount_script} && exec "$@"', str(target), *argv]


def no_traceback(proc: subprocess.CompletedProcess[str]) -> str:
    """The process's combined output, after checking that it holds no Python traceback."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    return text


def error_lines(stderr: str) -> list[str]:
    """The ``error:`` lines a run printed."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def hidden_leftovers(root: Path) -> list[Path]:
    """Temp files and folders a writer left behind (``.<name>.<pid>-<rand>.tmp``, ``.old-``)."""
    return sorted(p for p in root.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name)
