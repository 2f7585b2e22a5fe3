"""One build at a time per checkout: a lock on ``build/.build.lock``.

Two ``doit`` (or ``aero-media build``) runs in one checkout share ``build/``, the
dep file and the hash memo; the second waits for the first (one line says so),
or refuses at once with exit code 2 when ``AERO_MEDIA_LOCK=fail`` or ``--no-wait``
is set. ``filelock`` locks with ``flock`` on POSIX and ``LockFileEx`` on Windows;
the operating system drops the lock when the holder dies, so a killed build never
leaves a checkout locked.
"""

from __future__ import annotations

import os
import threading
from enum import StrEnum
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import PipelineError, UsageError
from .log import info

LOCK_NAME = ".build.lock"
POLICY_ENV = "AERO_MEDIA_LOCK"


class LockPolicy(StrEnum):
    """What a run does when another run holds the checkout."""

    WAIT = "wait"
    FAIL = "fail"


class LockedError(PipelineError):
    """Another build holds this checkout and the run was told not to wait."""

    exit_code = 2


_locks: dict[str, FileLock] = {}
_guard = threading.Lock()


def lock_policy() -> LockPolicy:
    """``AERO_MEDIA_LOCK`` from the environment (default: wait)."""
    raw = os.environ.get(POLICY_ENV, "") or LockPolicy.WAIT.value
    try:
        return LockPolicy(raw.strip().lower())
    except ValueError:
        raise UsageError(f"{POLICY_ENV}={raw[:40]!r} is not 'wait' or 'fail'",
                         f"set {POLICY_ENV}=fail to refuse at once, or unset it to wait") from None


def _lock_for(build_dir: Path) -> FileLock:
    path = build_dir / LOCK_NAME
    with _guard:
        key = os.path.abspath(path)
        if key not in _locks:
            # thread_local=False: doit -P thread takes it in one thread and may finish in another.
            _locks[key] = FileLock(path, thread_local=False)
        return _locks[key]


def acquire(build_dir: Path, policy: LockPolicy | None = None) -> None:
    """Hold the checkout's lock (re-entrant within this process) until :func:`release`."""
    policy = policy or lock_policy()
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_for(build_dir)
    try:
        lock.acquire(timeout=0)
        return
    except Timeout:
        pass
    shown = f"{build_dir.name}/{LOCK_NAME}"
    if policy is LockPolicy.FAIL:
        raise LockedError(f"another build is running in this checkout ({shown} is held)",
                          f"wait for it to finish, or unset {POLICY_ENV} (and drop --no-wait) to queue behind it")
    info(f"waiting for another build in this checkout to finish ({shown}); "
         f"set {POLICY_ENV}=fail to refuse instead")
    lock.acquire()


def release(build_dir: Path) -> None:
    """Undo one :func:`acquire`; the lock is free once every acquire is undone."""
    lock = _lock_for(build_dir)
    if lock.is_locked:
        lock.release()
