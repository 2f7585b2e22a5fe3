"""Several runs in one checkout: the build lock, the owner-aware temp sweep, parallel doit."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aero_media import buildlock
from tests.lib.doitproc import child_env, doit_argv, error_lines, hidden_leftovers, no_traceback, run
from tests.lib.project import make_project, sample_spec_data, write_spec

pytestmark = pytest.mark.integration


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj")
    for name in ("second", "third"):
        write_spec(root, name, sample_spec_data(name=name, default=False))
    return root


@pytest.fixture
def held(project: Path) -> object:
    """The checkout's lock, held by this test process as another build would hold it."""
    buildlock.acquire(project / "build", buildlock.LockPolicy.FAIL)
    yield None
    buildlock.release(project / "build")


def _read_until(stream: object, needle: str, timeout: float = 30) -> str:
    """Read lines from a pipe until one contains ``needle``."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen in: {seen!r}")


@pytest.mark.usefixtures("held")
def test_second_run_refuses_at_once_when_told(project: Path) -> None:
    proc = run(doit_argv(project), env=child_env(AERO_MEDIA_LOCK="fail"), timeout=30)
    no_traceback(proc)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [proc.stderr.strip()]
    assert "another build is running in this checkout" in proc.stderr and "fix:" in proc.stderr
    assert not (project / "build" / "sample").exists()

    cli = run([sys.executable, "-m", "aero_media", "--root", str(project), "build", "--no-wait"], timeout=30)
    no_traceback(cli)
    assert cli.returncode == 2 and "another build is running" in cli.stderr


@pytest.mark.usefixtures("held")
def test_bad_lock_setting_is_a_usage_error(project: Path) -> None:
    proc = run(doit_argv(project), env=child_env(AERO_MEDIA_LOCK="sometimes"), timeout=30)
    no_traceback(proc)
    assert proc.returncode == 2 and "AERO_MEDIA_LOCK='sometimes'" in proc.stderr


def test_second_run_waits_then_builds(project: Path) -> None:
    buildlock.acquire(project / "build", buildlock.LockPolicy.FAIL)
    proc = subprocess.Popen(doit_argv(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        waited = _read_until(proc.stderr, "waiting for another build")
        assert waited.count("\n") == 1
        time.sleep(0.3)
        assert proc.poll() is None and not (project / "build" / "sample").exists()
    finally:
        buildlock.release(project / "build")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    assert (project / "dist" / "sample" / "guest-tools" / "aero-guest-tools.zip").is_file()


def test_ctrl_c_while_waiting_is_quiet(project: Path) -> None:
    buildlock.acquire(project / "build", buildlock.LockPolicy.FAIL)
    try:
        proc = subprocess.Popen(doit_argv(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env())
        _read_until(proc.stderr, "waiting for another build")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        buildlock.release(project / "build")
    assert proc.returncode == 130 and "Traceback" not in out + err, out + err
    assert error_lines(err) == [line for line in err.splitlines() if "interrupted" in line]


def test_runs_started_together_all_succeed_with_serial_bytes(project: Path, tmp_path: Path) -> None:
    """Three runs at once, two of them on different specs: once they failed in most trials."""
    serial = make_project(tmp_path / "serial")
    for name in ("second", "third"):
        write_spec(serial, name, sample_spec_data(name=name, default=False))
    assert run(doit_argv(serial, "build:sample", "build:second", "build:third")).returncode == 0

    argvs = [doit_argv(project, "build:sample", "build:second"), doit_argv(project, "build:third"),
             doit_argv(project, "-n", "3", "build:sample", "build:third")]
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for a in argvs]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in out + err
    for name in ("sample", "second", "third"):
        assert digests(project / "dist" / name) == digests(serial / "dist" / name), name
    assert hidden_leftovers(project / "build") == [] and hidden_leftovers(project / "dist") == []


@pytest.mark.parametrize("par", ["process", "thread"])
def test_parallel_doit_writes_serial_bytes(project: Path, tmp_path: Path, par: str) -> None:
    serial = make_project(tmp_path / "serial")
    for name in ("second", "third"):
        write_spec(serial, name, sample_spec_data(name=name, default=False))
    names = ["build:sample", "build:second", "build:third"]
    assert run(doit_argv(serial, *names)).returncode == 0
    proc = run(doit_argv(project, "-n", "8", "-P", par, *names))
    assert proc.returncode == 0, proc.stderr
    for name in ("sample", "second", "third"):
        assert digests(project / "dist" / name) == digests(serial / "dist" / name), name


def test_sweep_spares_a_live_writer_and_clears_a_dead_one(tmp_path: Path) -> None:
    from aero_media.fsutil import write_bytes_atomic

    final = tmp_path / "out.iso"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = tmp_path / f".out.iso.{live.pid}-abc123xy.tmp"
        gone = tmp_path / f".out.iso.{dead.pid}-def456gh.tmp"
        gone_old = tmp_path / f".out.iso.old-{dead.pid}-xyz_4567"
        legacy = tmp_path / ".out.iso.k2j3h4m5.tmp"
        for p in (mine, gone, legacy):
            p.write_bytes(b"partial")
        gone_old.mkdir()
        write_bytes_atomic(final, b"complete")
        assert final.read_bytes() == b"complete"
        assert mine.exists(), "a live process's temp file was deleted under it"
        assert not gone.exists() and not gone_old.exists() and not legacy.exists()
        # A temp untouched for a day is stale even if its pid was reused by a live process.
        os.utime(mine, (time.time() - 2 * 86400,) * 2)
        write_bytes_atomic(final, b"again")
        assert not mine.exists()
    finally:
        live.kill()
        live.wait()


def test_sweep_and_clean_spare_a_users_look_alike(tmp_path: Path) -> None:
    """Only the exact names our writers make are swept: a user's similar file or folder survives, contents and all."""
    from aero_media.fsutil import remove_with_leftovers, write_bytes_atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    final = tmp_path / "out.iso"
    ours = tmp_path / f".out.iso.{dead.pid}-k2j3h4m5.tmp"
    ours.write_bytes(b"partial")
    looks = [tmp_path / ".out.iso.notes.tmp", tmp_path / f".out.iso.{dead.pid}-notes.tmp",
             tmp_path / f".out.iso.old-{dead.pid}-my-notes", tmp_path / ".out.iso.old-backup"]
    for p in looks:
        p.mkdir()
        (p / "mine.txt").write_bytes(b"keep me")
    write_bytes_atomic(final, b"complete")
    assert not ours.exists(), "the dead writer's temp was not swept"
    assert all((p / "mine.txt").read_bytes() == b"keep me" for p in looks)
    remove_with_leftovers(final)  # doit clean
    assert not final.exists()
    assert all((p / "mine.txt").read_bytes() == b"keep me" for p in looks)
