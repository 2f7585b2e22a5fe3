"""One build at a time per checkout: a lock on ``build/.build.lock``.

Two ``doit`` (or ``aero-media build``) runs in one checkout share ``build/``, the
dep file and the hash memo; the second waits for the first (one line says so),
or refuses at once with exit code 2 when ``AERO_MEDIA_LOCK=fail`` or ``--no-wait``
is set. ``filelock`` locks with ``flock`` on POSIX and ``LockFileEx`` on Windows;
the operating system drops the lock when the holder dies, so a killed build never
leaves a checkout locked.

Every call into ``filelock`` runs with Ctrl-C held back and delivered right after
it returns: a SIGINT handler that raises (``KeyboardInterrupt``, or the
``SystemExit(130)`` of a doit run) can otherwise fire at any bytecode inside the
library's bookkeeping, where its rollback is not safe against it (a run waiting
for the lock then ended with a grouped ``TypeError`` and exit 3 instead of 130).
While a run waits, it polls, so a Ctrl-C lands in our sleep, never in the library.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from .errors import PipelineError, UsageError
from .log import info

LOCK_NAME = ".build.lock"
POLICY_ENV = "AERO_MEDIA_LOCK"
POLL_SECONDS = 0.05  # how often a waiting run tries the lock again (filelock's own default)

_T = TypeVar("_T")


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


def _sigint_held_back(call: Callable[[], _T]) -> _T:
    """``call()`` with SIGINT recorded instead of handled, then re-raised for the usual handler.

    Off the main thread no handler can run anyway (Python runs them in the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return call()
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    try:
        return call()
    finally:
        # None: a handler installed outside Python; the default one is the closest.
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if pending:
            signal.raise_signal(signal.SIGINT)  # the handler runs here, in our code, and may raise


def _try(lock: FileLock) -> bool:
    """One attempt at the lock, without waiting."""
    try:
        _sigint_held_back(lambda: lock.acquire(timeout=0))
    except Timeout:
        return False
    return True


def acquire(build_dir: Path, policy: LockPolicy | None = None) -> None:
    """Hold the checkout's lock (re-entrant within this process) until :func:`release`."""
    policy = policy or lock_policy()
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_for(build_dir)
    if _try(lock):
        return
    shown = f"{build_dir.name}/{LOCK_NAME}"
    if policy is LockPolicy.FAIL:
        raise LockedError(f"another build is running in this checkout ({shown} is held)",
                          f"wait for it to finish, or unset {POLICY_ENV} (and drop --no-wait) to queue behind it")
    info(f"waiting for another build in this checkout to finish ({shown}); "
         f"set {POLICY_ENV}=fail to refuse instead")
    while not _try(lock):
        time.sleep(POLL_SECONDS)  # where a Ctrl-C while waiting is handled


def release(build_dir: Path) -> None:
    """Undo one :func:`acquire`; the lock is free once every acquire is undone."""
    lock = _lock_for(build_dir)
    if lock.is_locked:
        _sigint_held_back(lock.release)
