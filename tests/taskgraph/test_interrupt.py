"""Ctrl-C during a doit run: exit 130 and one line, wherever the signal lands."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from doit.exceptions import TaskError

from aero_media.taskgraph import interrupt
from aero_media.taskgraph.report import OneLineReporter
from tests.lib.project import REPO, make_project

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


# A Ctrl-C at a chosen point of a real process, with no hook in the code under test: Python imports this
# ``sitecustomize`` at start-up (the test puts it first on PYTHONPATH), and its audit hook sends the
# process SIGINT at the Nth event of a kind once one of our handlers is in place. The same N gives the
# same point in every run.
_SITECUSTOMIZE = """
import atexit, os, signal, sys

_event = os.environ["CTRL_C_EVENT"]
_at = int(os.environ["CTRL_C_AT"])
_count = [0]


def _ours():
    handler = signal.getsignal(signal.SIGINT)
    return getattr(handler, "__module__", "").startswith("aero_media")


_unguarded = []  # our modules imported before any handler of ours was in place


def _hook(event, args):
    if event != _event:
        return
    if not _ours():
        if str(args[0]).startswith("aero_media"):
            _unguarded.append(str(args[0]))
        return
    if _count[0] > _at:
        return
    _count[0] += 1
    if _count[0] == _at:
        os.kill(os.getpid(), signal.SIGINT)


def _profile(frame, event, arg):
    # The first __set_name__ called while a task's action runs (a dataclass field's, a cached_property's):
    # a class made by a lazy import. The handler runs inside it. (EnumType unwraps its own members' errors.)
    code = frame.f_code
    if (event == "call" and code.co_name == "__set_name__" and not code.co_filename.endswith("enum.py")
            and _in_a_task(frame)):
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGINT)


def _in_a_task(frame):
    while frame is not None:
        code = frame.f_code
        if code.co_name == "execute" and code.co_filename.endswith(os.path.join("doit", "action.py")):
            return True
        frame = frame.f_back
    return False


def _count_out():
    with open(os.environ["CTRL_C_COUNT"], "w") as out:
        out.write(" ".join([str(_count[0]), *_unguarded]))


if _event == "exit":
    # Registered first, so called last: after every other atexit callback (filelock's among them).
    atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
elif _event == "__set_name__":  # once a run's raising handler is in place
    sys.setprofile(_profile)
else:
    sys.addaudithook(_hook)
    if os.environ.get("CTRL_C_COUNT"):
        atexit.register(_count_out)
"""


def _bin(name: str) -> str:
    script = Path(sys.executable).parent / name
    if not script.is_file():
        pytest.skip(f"{name} is not installed beside {sys.executable}")
    return str(script)


def _entry_commands() -> dict[str, list[str]]:
    return {"aero-media": [_bin("aero-media"), "list-specs"],
            "python -m aero_media": [sys.executable, "-m", "aero_media", "list-specs"],
            "doit": [_bin("doit"), "list"],
            "doit build": [_bin("doit")]}  # a successful run: it ends itself, without the interpreter's teardown


def _checkout(tmp_path: Path) -> Path:
    """A project of its own (no build lock shared with other tests), as a checkout: doit takes our loader."""
    project = make_project(tmp_path / "proj")
    for name in ("pyproject.toml", "dodo.py"):
        shutil.copyfile(REPO / name, project / name)
    return project


def _run_with_ctrl_c(tmp_path: Path, argv: list[str], event: str, at: int, *, cwd: Path,
                     count: Path | None = None) -> subprocess.CompletedProcess[str]:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
               CTRL_C_EVENT=event, CTRL_C_AT=str(at), AERO_MEDIA_PROGRESS="never")
    if count is not None:
        env["CTRL_C_COUNT"] = str(count)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def _assert_interrupted(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    # doit's task lines ('.  name', '-- name') share stderr with the diagnostics; besides them, one line.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith((".  ", "-- "))]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted (Ctrl-C)"), proc.stderr


@pytest.mark.parametrize("command", ["aero-media", "python -m aero_media", "doit"])
def test_ctrl_c_during_imports_is_one_line(tmp_path: Path, command: str) -> None:
    """From our first statement on, a Ctrl-C at any import is one line and exit 130 (once a traceback)."""
    argv = _entry_commands()[command]
    project = _checkout(tmp_path)
    count = tmp_path / "count"
    whole = _run_with_ctrl_c(tmp_path, argv, "import", 10**9, cwd=project, count=count)
    assert whole.returncode == 0, whole.stderr
    counted, *unguarded = count.read_text().split()
    # Only the package and the entry module itself load before the handler (doit's own imports are doit's).
    assert set(unguarded) <= {"aero_media", "aero_media.entry", "aero_media.ctrlc"}, unguarded
    imports = int(counted)
    assert imports > 50
    # The first, the last, and points spread between: the same points in every run.
    for at in sorted({1, 2, *range(imports // 7, imports, imports // 7), imports}):
        _assert_interrupted(_run_with_ctrl_c(tmp_path, argv, "import", at, cwd=project))


@pytest.mark.parametrize("command", ["aero-media", "python -m aero_media", "doit", "doit build"])
def test_ctrl_c_at_exit_is_one_line(tmp_path: Path, command: str) -> None:
    """A Ctrl-C while the interpreter shuts down (atexit callbacks): once 'Exception ignored' and a traceback."""
    argv, project = _entry_commands()[command], _checkout(tmp_path)
    if command == "doit build":  # built first, so the run under test prints no warning beside the one line
        built = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, AERO_MEDIA_PROGRESS="never"))
        assert built.returncode == 0, built.stderr
    _assert_interrupted(_run_with_ctrl_c(tmp_path, argv, "exit", 0, cwd=project))


@pytest.mark.parametrize("command", ["aero-media build", "doit"])
def test_ctrl_c_inside_a_class_body_is_not_a_crash(tmp_path: Path, command: str) -> None:
    """Python 3.11 wraps what ``__set_name__`` raises in RuntimeError: once an "internal error" in the log."""
    project = _checkout(tmp_path)
    argv = [_bin("aero-media"), "build"] if command == "aero-media build" else [_bin("doit")]
    _assert_interrupted(_run_with_ctrl_c(tmp_path, argv, "__set_name__", 1, cwd=project))
    assert not (project / "build" / ".last-error.txt").exists()


def _wrapped_in_set_name() -> RuntimeError:
    """What Python 3.11 makes of a Ctrl-C handled while a class body's ``__set_name__`` runs."""
    class Pressed:
        def __set_name__(self, owner: type, name: str) -> None:
            raise interrupt.Interrupted

    try:
        try:
            type("Made", (), {"field": Pressed()})
        except interrupt.Interrupted as exc:  # Python 3.12 and later no longer wrap it: as 3.11 does
            raise RuntimeError("Error calling __set_name__") from exc
    except RuntimeError as wrapped:
        return wrapped
    raise AssertionError("__set_name__ raised nothing")


def test_a_wrapped_ctrl_c_in_a_task_is_the_interrupted_line(tmp_path: Path) -> None:
    """A task failing with an exception that wraps a Ctrl-C: exit 130, no crash report in the error log."""
    wrapped = _wrapped_in_set_name()
    fail = TaskError("Python Task failed", wrapped)
    reporter = type("Reporter", (OneLineReporter,), {"error_log": tmp_path / "build" / ".last-error.txt"})
    rep = reporter(io.StringIO(), {"verbosity": 0, "failure_verbosity": 0})
    restore = interrupt.install()
    try:
        with pytest.raises(interrupt.Interrupted):
            rep.add_failure(SimpleNamespace(name="stage:sample:x86"), fail)
    finally:
        restore()
    assert not (tmp_path / "build").exists()


def test_after_a_ctrl_c_any_failure_ends_the_run_as_interrupted(tmp_path: Path) -> None:
    """A closed pipe (EBADF) after the Ctrl-C: the run ends as interrupted, not with a disk error."""
    reporter = type("Reporter", (OneLineReporter,), {"error_log": tmp_path / "build" / ".last-error.txt"})
    rep = reporter(io.StringIO(), {"verbosity": 0, "failure_verbosity": 0})
    restore = interrupt.install()
    try:
        with pytest.raises(interrupt.Interrupted):
            signal.raise_signal(signal.SIGINT)
        ebadf = OSError(errno.EBADF, os.strerror(errno.EBADF))
        assert interrupt.caused(ebadf)
        with pytest.raises(interrupt.Interrupted):
            rep.complete_run()
    finally:
        restore()
    restore_again = interrupt.install()  # a new run forgets the old Ctrl-C
    try:
        assert not interrupt.caused(OSError(errno.EBADF, os.strerror(errno.EBADF)))
        assert interrupt.caused(_wrapped_in_set_name())  # the chain still tells
    finally:
        restore_again()


def test_cli_reports_a_wrapped_ctrl_c_as_interrupted(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A command failing with RuntimeError that wraps a Ctrl-C: exit 130 and the one line, not a crash."""
    from aero_media import cli

    def list_specs(_args: object) -> int:
        """List the specs (here: a Ctrl-C handled inside a class body)."""
        raise _wrapped_in_set_name()

    monkeypatch.setattr(cli, "cmd_list_specs", list_specs)
    assert cli.main(["--root", str(REPO), "list-specs"]) == 130
    err = capsys.readouterr().err
    assert err.count("error: interrupted (Ctrl-C)") == 1 and "Traceback" not in err, err
