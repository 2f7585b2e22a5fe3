"""What a killed run leaves behind: no key material and no temp anywhere a later run does not remove,
and no doit worker or tool outliving the process that started it. Real processes, killed with SIGKILL at
points the test chooses (a stand-in program on PATH kills its parent at its k-th call)."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lib.doitproc import child_env, doit_argv, run
from tests.lib.needs import need_tool
from tests.lib.project import REPO, expanded_sample, make_project, write_spec

pytestmark = pytest.mark.integration

SPEC = "sample-testsigned"
KEY_VAR = "AERO_TEST_KEY"


def stand_in(bin_dir: Path, name: str, body: str) -> Path:
    """A program ``name`` on a PATH of its own: a shell script that records its calls in ``$CALLS``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def wait_until(done: object, what: str, timeout: float = 30) -> None:
    """Poll ``done()`` until it is true; fail naming ``what`` after ``timeout`` seconds (no sleep decides)."""
    assert callable(done)
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie nobody reaps (ours are reaped by pid 1, not by the test) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# --- Secrets: the signing key from the environment never lands on disk ------------------------------------


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from aero_media.devtools.testcert import make_test_cert

    made = make_test_cert(tmp_path_factory.mktemp("home") / "aero", not_before=315532800)
    return made.cer, made.key_pem.read_text()


def key_material(pem: str) -> list[bytes]:
    """What betrays the key in a file: its armour line and every line of its base64 body."""
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    body = base64.b64decode("".join(lines))
    return [b"PRIVATE KEY-----", body[16:48], *(line.encode() for line in lines if len(line) >= 32)]


def files_holding(roots: list[Path], needles: list[bytes]) -> list[str]:
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}" for needle in needles if needle in data][:1]
    return found


# Per kill point: the k-th `osslsigncode sign` call of a build staging both arches (the sample signs 4
# catalogs per arch), and whether the build dies before the real program starts, while it runs, or once it has
# written its output.
SIGN_CALLS = 8
KILL_POINTS = [(k, when) for k in range(1, SIGN_CALLS + 1) for when in ("before", "while", "after")]

_OSSLSIGNCODE = """\
[ "$1" = sign ] || exec "$REAL" "$@"
n=$(( $(cat "$CALLS" 2>/dev/null || echo 0) + 1 )); echo $n > "$CALLS"
[ "$n" = "$KILL_AT" ] || exec "$REAL" "$@"
case "$KILL_WHEN" in
  before) kill -9 $PPID; exit 137;;
  while) "$REAL" "$@" & kill -9 $PPID; wait; exit 137;;
  after) "$REAL" "$@"; kill -9 $PPID; exit 137;;
esac
"""


@pytest.fixture(scope="module")
def signing_project(tmp_path_factory: pytest.TempPathFactory, key_pair: tuple[Path, str]) -> Path:
    """A project signing with the key in an environment variable, its sources already imported."""
    need_tool("osslsigncode")
    cer, _pem = key_pair
    project = make_project(tmp_path_factory.mktemp("signing") / "proj")
    data = yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text())
    data["signing"] = {"mode": "test", "cert": str(cer), "key_env": KEY_VAR}
    write_spec(project, SPEC, data)
    return project


@pytest.mark.parametrize(("k", "when"), KILL_POINTS, ids=[f"call{k}-{w}" for k, w in KILL_POINTS])
def test_a_build_killed_while_signing_leaves_no_key_material(tmp_path: Path, signing_project: Path,
                                                             key_pair: tuple[Path, str], k: int, when: str) -> None:
    _cer, pem = key_pair
    project = tmp_path / "proj"
    shutil.copytree(signing_project, project, symlinks=True)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "osslsigncode", _OSSLSIGNCODE)
    env = child_env(PATH=path_with(bin_dir), TMPDIR=str(tmpdir), REAL=str(need_tool("osslsigncode")),
                    CALLS=str(tmp_path / "calls"), KILL_AT=str(k), KILL_WHEN=when, **{KEY_VAR: pem})
    proc = run(doit_argv(project, f"stage:{SPEC}:amd64", f"stage:{SPEC}:x86"), env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr  # killed at the chosen call
    assert (tmp_path / "calls").read_text().strip() == str(k)
    assert files_holding([tmpdir, project / "build", project / "dist"], key_material(pem)) == []
    assert sorted(p.name for p in tmpdir.iterdir()) == []


def test_an_older_versions_key_folder_is_removed_by_the_next_signing_run(tmp_path: Path, signing_project: Path,
                                                                         key_pair: tuple[Path, str]) -> None:
    _cer, pem = key_pair
    project = tmp_path / "proj"
    shutil.copytree(signing_project, project, symlinks=True)
    tmpdir = tmp_path / "tmp"
    left = tmpdir / "aero-signing-k3y_f0ld"  # as tempfile.mkdtemp(prefix="aero-signing-") named it
    left.mkdir(parents=True, mode=0o700)
    (left / "key.pem").write_text(pem)
    look_alike = tmpdir / "aero-signing-notes"  # not a name mkdtemp makes: a user's
    look_alike.mkdir()
    (look_alike / "key.pem").write_text("mine")
    proc = run(doit_argv(project, f"stage:{SPEC}:amd64"), env=child_env(TMPDIR=str(tmpdir), **{KEY_VAR: pem}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmpdir.iterdir()) == ["aero-signing-notes"]
    assert (look_alike / "key.pem").read_text() == "mine"


# --- Leftovers: temps in $TMPDIR, workers and tools ------------------------------------------------------


def test_old_versions_temp_folders_are_swept_and_look_alikes_kept(tmp_path: Path) -> None:
    from aero_media.scratch import sweep_old_temp_folders

    made = {"aero-fsck-ab12cd34": "partition.img", "aero-reg-zz_9yy8x": "edits.reg",
            "aero-media-q1w2e3r4": "build", "aero-signing-00000000": "key.pem"}
    kept = {"aero-fsck-notes": "partition.img", "aero-reg-ab12cd34": "mine.txt", "aero-media-abcdefgh": "photos"}
    for name, entry in {**made, **kept}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / entry).write_bytes(b"x")
    (tmp_path / "aero-fsck-11112222").symlink_to(tmp_path / "aero-fsck-notes")  # a link is never followed
    recent = tmp_path / "aero-fsck-fresh123"  # an older version may be running right now: left for an hour
    recent.mkdir()
    old = time.time() - 2 * 3600
    for name in made:
        os.utime(tmp_path / name, (old, old))
    assert sorted(p.name for p in sweep_old_temp_folders(tmp_path)) == sorted(made)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "aero-fsck-11112222", "aero-fsck-fresh123"])


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return expanded_sample(tmp_path_factory.mktemp("pack") / "pack")


def build_fat(pack: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "aero_media", "build-fat", "--drivers-root", str(pack), "--output", str(out),
                "--allow-placeholder-catalogs"], env=env)


def test_build_fat_killed_while_fsck_runs_leaves_nothing_the_next_run_keeps(tmp_path: Path, pack: Path) -> None:
    tool = "fsck.fat"
    need_tool(tool)
    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    out.mkdir()
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, tool, 'kill -9 $PPID; exit 137\n')
    killed = build_fat(pack, out / "disk.vhd", child_env(PATH=path_with(bin_dir), TMPDIR=str(tmpdir)))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert list(tmpdir.iterdir()) == []  # the partition copy had no name
    # The killed run's work folder is all that is left beside --output; the next run removes it.
    assert [p.name.startswith(".aero-build-") for p in out.iterdir()] == [True]
    done = build_fat(pack, out / "disk.vhd", child_env(TMPDIR=str(tmpdir)))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["disk.vhd"]
    assert list(tmpdir.iterdir()) == []


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.fixture
def reaped() -> Iterator[list[int]]:
    """Pids the test started; any still alive at the end are killed (a failing test leaves nothing running)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_doit_workers_and_their_tools_die_with_doit(tmp_path: Path, reaped: list[int]) -> None:
    need_tool("fsck.fat")
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc")
    project = make_project(tmp_path / "proj")
    bin_dir = tmp_path / "bin"
    started = tmp_path / "started"
    # fsck.fat blocks until it is killed; it says who it is and who started it (a doit worker).
    stand_in(bin_dir, "fsck.fat", f'echo $$ $PPID > "{started}.tmp"; mv "{started}.tmp" "{started}"; '
                                  "exec sleep 600\n")
    env = child_env(PATH=path_with(bin_dir), TMPDIR=str(tmp_path))
    doit = subprocess.Popen(doit_argv(project, "-n", "2", "verify_fat_disk:sample"), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    reaped.append(doit.pid)
    wait_until(started.exists, "fsck.fat never ran", timeout=120)
    tool, worker = map(int, started.read_text().split())
    workers = children(doit.pid)
    reaped.extend([*workers, tool])
    assert worker in workers and len(workers) == 2
    doit.kill()
    doit.wait()
    wait_until(lambda: not any(alive(p) for p in [*workers, tool]), "a worker or its tool outlived doit")
