"""Ending a finished process: the atexit callbacks run, the output is whole, the code is kept, no teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib.project import REPO, make_project
from tests.lib.teardown import ending_of, marker_env

# Buffered output never flushed by the program, and a callback registered after the hook's: it runs first.
_ENDS = """
import atexit, sys
from aero_media import ending

sys.stdout.write("result without a newline")
sys.stderr.write("diagnostic\\n")
atexit.register(lambda: sys.stdout.write(" and the callback's tail"))
assert ending.can_end()
ending.end(int(sys.argv[1]))
"""


def _python(tmp_path: Path, program: str, *args: str, **kwargs: object) -> tuple[subprocess.CompletedProcess[str],
                                                                                 list[str]]:
    env, marker = marker_env(tmp_path)
    env.pop("PYTHONUNBUFFERED", None)  # stdout buffered, as for a user: end() must flush what is held
    proc = subprocess.run([sys.executable, "-c", program, *args], cwd=REPO, env=env, text=True, timeout=60,
                          **kwargs)  # type: ignore[call-overload]
    return proc, ending_of(marker)


@pytest.mark.parametrize("code", [0, 1, 3])
def test_end_runs_the_callbacks_flushes_and_skips_the_teardown(tmp_path: Path, code: int) -> None:
    proc, ending = _python(tmp_path, _ENDS, str(code), capture_output=True)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "result without a newline and the callback's tail"
    assert proc.stderr == "diagnostic\n"
    assert ending == ["atexit"]  # every callback ran; no object was finalised


def test_without_end_the_interpreter_tears_down(tmp_path: Path) -> None:
    """The marker tells the two endings apart: a plain exit runs the finaliser."""
    proc, ending = _python(tmp_path, "import sys; sys.exit(4)", capture_output=True)
    assert proc.returncode == 4 and ending == ["atexit", "finalized"]


def test_a_reader_that_has_gone_is_exit_141_and_quiet(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    try:
        proc, ending = _python(tmp_path, _ENDS, "0", stdout=w, stderr=subprocess.PIPE)
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "diagnostic\n" and ending == ["atexit"]


def test_ctrl_c_in_a_callback_is_one_line_and_130(tmp_path: Path) -> None:
    """The program's frames are still below the callbacks: the signal must not raise inside one."""
    program = ("import atexit, os, signal\nfrom aero_media import ending\nfrom aero_media.taskgraph import interrupt\n"
               "interrupt.install()\natexit.register(os.kill, os.getpid(), signal.SIGINT)\nending.end(0)\n")
    proc, _ = _python(tmp_path, program, capture_output=True)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.startswith("error: interrupted (Ctrl-C)") and proc.stderr.count("\n") == 1, proc.stderr


def test_a_running_thread_keeps_the_interpreters_exit(tmp_path: Path) -> None:
    """A non-daemon thread is joined by the interpreter before its callbacks: ending early would cut it off."""
    program = ("import threading\nfrom aero_media import ending\nstop = threading.Event()\n"
               "t = threading.Thread(target=stop.wait)\nt.start()\nbusy = ending.can_end()\nstop.set()\nt.join()\n"
               "daemon = threading.Thread(target=threading.Event().wait, daemon=True)\ndaemon.start()\n"
               "print(busy, ending.can_end())\n")
    proc, _ = _python(tmp_path, program, capture_output=True)
    assert proc.stdout == "False True\n", proc.stderr


@pytest.mark.parametrize(("argv", "code"), [(["list-specs"], 0), (["--help"], 0), (["no-such-command"], 2),
                                            (["show-spec", "missing"], 2)])
def test_aero_media_ends_without_the_teardown(tmp_path: Path, argv: list[str], code: int) -> None:
    """Whatever the command's code, once it is known the process ends there, its output whole."""
    project = make_project(tmp_path / "proj")
    env, marker = marker_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "aero_media", "--root", str(project), *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert ending_of(marker) == ["atexit"]
    assert "Traceback" not in proc.stderr
    if argv == ["list-specs"]:
        assert any(line.split()[0] == "sample" for line in proc.stdout.splitlines()) and proc.stdout.endswith("\n")
    if code == 2:
        assert proc.stderr.strip() and proc.stdout == ""
