"""Ctrl-C during a doit run: exit 130 and one line, wherever the signal lands."""

from __future__ import annotations

import subprocess
import sys

from tests.lib.project import REPO

# stderr through a raw writer that receives a Ctrl-C in the middle of its first write, as a run's
# "waiting for another build" line once did: the handler then runs while the buffered stream is busy.
_CTRL_C_INSIDE_A_STDERR_WRITE = """
import io, os, signal, sys
from aero_media.taskgraph import interrupt

class Raw(io.RawIOBase):
    pressed = False
    def writable(self): return True
    def fileno(self): return 2
    def write(self, data):
        if not Raw.pressed:
            Raw.pressed = True
            signal.raise_signal(signal.SIGINT)
        return os.write(2, data)

sys.stderr = io.TextIOWrapper(io.BufferedWriter(Raw()), line_buffering=True)
interrupt.install()
print("waiting for another build", file=sys.stderr, flush=True)
print("not reached", file=sys.stderr, flush=True)
"""


def test_ctrl_c_while_stderr_is_being_written_exits_130() -> None:
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_INSIDE_A_STDERR_WRITE], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "not reached" not in proc.stderr, proc.stderr
    assert proc.stderr.count("error: interrupted (Ctrl-C)") == 1, proc.stderr
