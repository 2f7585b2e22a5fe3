"""Processes that die with their parent: doit's ``-n`` workers and every program :mod:`aero_media.systools` starts.

A parent killed with SIGKILL runs no code, so its children would live on,
reparented to pid 1. Linux's ``PR_SET_PDEATHSIG`` has the kernel signal a child
when its parent dies; set in the child, it races the parent dying first, so the
child then also checks that its parent is still the process that forked it.
Elsewhere these are no-ops.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing import util
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - every Linux C library has prctl
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return fn


def die_with_parent(sig: int, parent: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent (pid ``parent``) dies.

    Call it in the child, before anything else: if the parent is already gone (this
    process was reparented), ``sig`` is raised at once.
    """
    prctl = _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def child_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :mod:`subprocess`: the program is killed (SIGKILL) when this process dies.

    None where the system cannot (subprocess then keeps its faster spawn path). The C
    function is looked up here, before the fork, so the child only makes one call.
    """
    if _prctl() is None:
        return None
    parent = os.getpid()
    return lambda: die_with_parent(signal.SIGKILL, parent)


def _on_terminate(signum: int, _frame: FrameType | None) -> None:
    # An exception, not an exit: the worker's finally clauses remove the temps it was writing.
    raise SystemExit(128 + signum)


class _Hook:
    """What multiprocessing's after-fork registry holds on to (it keeps weak references only)."""


_HOOK = _Hook()
_installed: list[bool] = []


def _worker_started(_hook: _Hook) -> None:
    # multiprocessing knows the pid of the process that started this one (getppid() alone cannot tell it
    # from pid 1 or a subreaper that adopted us after it died).
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    signal.signal(signal.SIGTERM, _on_terminate)
    die_with_parent(signal.SIGTERM, parent.pid)


def workers_die_with_parent() -> None:
    """Every :mod:`multiprocessing` child of this process (doit ``-n N`` workers) gets SIGTERM when it dies.

    The worker turns SIGTERM into ``SystemExit``, so it removes its temps before it
    ends. Idempotent; call it before doit starts its workers.
    """
    if _installed or _prctl() is None:
        return
    _installed.append(True)
    util.register_after_fork(_HOOK, _worker_started)
    # Registered after multiprocessing's own exit hook, so it runs first (atexit is last in, first out).
    atexit.register(_stop_workers)


def _stop_workers() -> None:
    """At exit, tell workers still running to stop (SIGTERM: they remove their temps and end).

    A run that ends normally has joined its workers; one that ends on Ctrl-C may not have,
    and multiprocessing's exit hook would then wait for a worker blocked in a read (a
    stalled download) for as long as that read lasts.
    """
    for child in multiprocessing.active_children():
        child.terminate()
