"""The end of a doit run: a successful `doit` ends without the interpreter's teardown, complete; anything else not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aero_media.taskgraph.report import doit_exit_code
from tests.lib.doitproc import child_env, doit_argv, hidden_leftovers, run
from tests.lib.needs import need_tool
from tests.lib.project import REPO, make_project, run_doit
from tests.lib.teardown import ending_of, marker_env


def _doit_script(project: Path, *args: str) -> list[str]:
    """doit's own console script (``doit``), not ``python -m doit``: the stack below doit differs."""
    script = Path(sys.executable).parent / "doit"
    if not script.is_file():
        pytest.skip(f"doit is not installed beside {sys.executable}")
    return [str(script), *doit_argv(project, *args)[3:]]


def _assert_complete(project: Path, proc: subprocess.CompletedProcess[str]) -> None:
    """The summary, the report, the media, no temp; and doit's dep file saved: a second run has nothing to do."""
    assert proc.stdout.startswith("== sample: OK, 12 warning(s), 0 error(s)\n"), proc.stdout
    assert proc.stdout.rstrip("\n").splitlines()[-1].startswith("  skipped driver viosnd"), proc.stdout
    assert ".  verify:sample" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads((project / "build/sample/report.json").read_text())["ok"]
    assert hidden_leftovers(project) == []
    again = run(doit_argv(project))
    assert again.returncode == 0 and ".  " not in again.stderr, again.stderr


@pytest.mark.parametrize("how", ["python -m doit", "doit", "doit -n 2", "doit -n 2 -P thread"])
def test_a_successful_doit_ends_without_the_teardown(tmp_path: Path, how: str) -> None:
    project = make_project(tmp_path / "proj")
    args = how.split()[1:] if how.startswith("doit") else []
    argv = _doit_script(project, *args) if how.startswith("doit") else doit_argv(project)
    env, marker = marker_env(tmp_path)
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ending_of(marker) == ["atexit"]  # the atexit callbacks ran, the finaliser did not
    _assert_complete(project, proc)


def test_a_failed_doit_keeps_doits_code_and_exit(tmp_path: Path) -> None:
    """A failed task: exit 1 (doit's code), through the interpreter's own exit."""
    project = make_project(tmp_path / "proj")
    (project / "prebuilt/sample/win7/x86/viostor/viostor.inf").write_bytes(b"not an INF\x00")
    env, marker = marker_env(tmp_path)
    proc = subprocess.run(doit_argv(project), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "viostor.inf" in proc.stderr and "Traceback" not in proc.stderr
    assert ending_of(marker) == ["atexit", "finalized"]


@pytest.mark.parametrize("argv", [["list"], ["strace", "notices:sample"]])
def test_other_doit_commands_take_the_interpreters_exit(tmp_path: Path, argv: list[str]) -> None:
    """Only `doit [run]` is known to exit with the run's code right after the report (strace reads on after it)."""
    if argv[0] == "strace":
        need_tool("strace", "doit strace runs it")
    project = make_project(tmp_path / "proj")
    env, marker = marker_env(tmp_path)
    proc = subprocess.run(doit_argv(project, *argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ending_of(marker) == ["atexit", "finalized"]


def test_a_reader_that_reads_one_line_and_goes(tmp_path: Path) -> None:
    """`doit | head -1`: the reader may go before or after the last write; either way a quiet end, outputs whole."""
    project = make_project(tmp_path / "proj")
    proc = subprocess.Popen(doit_argv(project), cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) in (0, 141), err
    assert first.startswith("== sample: OK")
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert json.loads((project / "build/sample/report.json").read_text())["ok"]
    again = run(doit_argv(project))
    assert again.returncode == 0 and ".  " not in again.stderr, again.stderr


def test_in_process_doit_returns(tmp_path: Path) -> None:
    """`aero-media build` runs doit in this process and goes on after it: the run only returns its code."""
    project = make_project(tmp_path / "proj")
    assert run_doit(project) == 0
    assert doit_exit_code(sys._getframe()) is None
