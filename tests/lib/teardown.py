"""Whether a child Python process went through the interpreter's teardown.

Python imports a ``sitecustomize`` at start-up (put first on PYTHONPATH by :func:`marker_env`).
The one written here holds an object whose finaliser appends ``finalized`` to a file: it runs
only while the interpreter tears its modules down, never at ``os._exit``. A first-registered
``atexit`` callback (so called last) appends ``atexit``: the callbacks did run.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.lib.doitproc import child_env

_SITECUSTOMIZE = """
import atexit, os

_PATH = os.environ["TEARDOWN_MARKER"]


def _append(text, _open=os.open, _write=os.write, _close=os.close, _flags=os.O_WRONLY | os.O_CREAT | os.O_APPEND):
    # Bound now: in the teardown the module's globals and the builtins are already gone.
    fd = _open(_PATH, _flags, 0o644)
    try:
        _write(fd, text.encode())
    finally:
        _close(fd)


class _Finalised:
    def __del__(self, _append=_append):
        _append("finalized\\n")


_token = _Finalised()
atexit.register(_append, "atexit\\n")
"""


def marker_env(tmp_path: Path, **extra: str) -> tuple[dict[str, str], Path]:
    """The environment of a child that records its ending, and the file it records it in."""
    hooks = tmp_path / "teardown-hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    marker = tmp_path / "teardown-marker"
    marker.unlink(missing_ok=True)
    env = child_env(TEARDOWN_MARKER=str(marker), **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hooks), env.get("PYTHONPATH", "")) if p)
    return env, marker


def ending_of(marker: Path) -> list[str]:
    """What the child recorded: ``["atexit"]`` when it skipped the teardown, ``["atexit", "finalized"]`` when not."""
    return marker.read_text().split() if marker.exists() else []
