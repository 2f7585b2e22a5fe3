"""Faults under real doit processes: full and read-only disks, size limits, Ctrl-C, deep trees, a broken dep file.

Each one must end with one ``error:`` line naming the path and the fix, a non-zero
exit, no traceback, and no partial target: whatever is in dist/ is byte for byte
what a good build writes, and no temp file is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.lib.doitproc import (
    child_env,
    doit_argv,
    error_lines,
    hidden_leftovers,
    mounted,
    no_traceback,
    run,
    userns_prefix,
)
from tests.lib.httpserver import serve
from tests.lib.project import expanded_sample, make_project, sample_spec_data, write_spec
from tests.lib.upstream import make_iso, make_upstream_tree

pytestmark = pytest.mark.integration


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """dist/sample of a good serial build."""
    project = make_project(tmp_path_factory.mktemp("reference"))
    proc = run(doit_argv(project))
    assert proc.returncode == 0, proc.stderr
    return digests(project / "dist" / "sample")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def assert_nothing_partial(project: Path, reference: dict[str, str]) -> None:
    assert hidden_leftovers(project / "dist") == [] and hidden_leftovers(project / "build") == []
    present = digests(project / "dist" / "sample") if (project / "dist" / "sample").is_dir() else {}
    assert {k: v for k, v in present.items() if reference.get(k) != v} == {}


def assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    no_traceback(proc)
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "fix:" in lines[0]
    return lines[0]


def test_full_disk_in_dist(project: Path, reference: dict[str, str]) -> None:
    (project / "dist").mkdir()
    proc = run(mounted('mount -t tmpfs -o size=16k tmpfs "$0"', project / "dist", doit_argv(project)))
    line = assert_one_line(proc, "dist/sample/", "(ENOSPC)", "free space")
    assert proc.returncode == 1, line
    # The tmpfs is gone with its namespace; what matters is that build/ kept no half-written state.
    assert_nothing_partial(project, reference)


def test_full_disk_in_build(project: Path, reference: dict[str, str]) -> None:
    (project / "build").mkdir()
    proc = run(mounted('mount -t tmpfs -o size=48k tmpfs "$0"', project / "build", doit_argv(project)))
    assert_one_line(proc, "build/", "(ENOSPC)")
    assert_nothing_partial(project, reference)


def test_file_size_limit(project: Path, reference: dict[str, str]) -> None:
    """EFBIG, as `ulimit -f` gives it: the stand-ins and stage fit, the ISOs do not."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run(doit_argv(project), capture_output=True, text=True, timeout=120, env=child_env(),
                          preexec_fn=limit)
    assert_one_line(proc, "build/sample/media/", "(EFBIG)", "ulimit -f")
    assert_nothing_partial(project, reference)


def test_read_only_file_system(project: Path, reference: dict[str, str]) -> None:
    (project / "dist").mkdir()
    proc = run(mounted('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"', project / "dist",
                       doit_argv(project)))
    assert_one_line(proc, "dist/sample", "(EROFS)", "read-only file system")
    assert_nothing_partial(project, reference)


def test_read_only_dist_folder(project: Path, reference: dict[str, str]) -> None:
    """A dist/ its owner cannot write (today's PermissionError traceback from the drivers ISO step)."""
    assert run(doit_argv(project)).returncode == 0
    # A published medium gone: the media in build/ are current, so the one write the run needs is dist/'s.
    (project / "dist" / "sample" / "aero-virtio-win7-drivers.iso").unlink()
    os.chmod(project / "dist" / "sample", 0o555)
    try:
        # As nobody, so that root's override of file modes does not hide the fault.
        proc = run([*userns_prefix(root=False), *doit_argv(project)])
    finally:
        os.chmod(project / "dist" / "sample", 0o755)
    assert_one_line(proc, "dist/sample/", "(EACCES)", "writable")
    assert_nothing_partial(project, reference)


@pytest.fixture
def deep_trees() -> object:
    """Deep trees made by a test, removed after it (pytest's own cleanup recurses and fails on them)."""
    from aero_media.fsutil import remove_tree

    made: list[Path] = []
    yield made
    for root in made:
        remove_tree(root)


def _deep(root: Path, levels: int) -> Path:
    # Built from the bottom up in chunks: one mkdir per level, paths stay short for the kernel.
    here = root
    here.mkdir(parents=True, exist_ok=True)
    fd = os.open(here, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as fp:
            fp.write("bottom\n")
    finally:
        os.close(fd)
    return root


def _pack_spec(project: Path, name: str, pack: Path) -> None:
    data = sample_spec_data(name=name, default=False)
    data["source"] = {"kind": "pack-dir", "path": str(pack.relative_to(project))}
    write_spec(project, name, data)


def test_deep_folder_beside_the_drivers_is_harmless(project: Path, deep_trees: list[Path]) -> None:
    pack = expanded_sample(project / "prebuilt" / "deep")
    deep_trees.append(project)
    _deep(pack / "junk", 1100)
    _pack_spec(project, "deep", pack)
    proc = run(doit_argv(project, "build:deep"))
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr


def test_deep_folder_in_a_package_fails_only_its_spec(project: Path, reference: dict[str, str],
                                                      deep_trees: list[Path]) -> None:
    pack = expanded_sample(project / "prebuilt" / "deep")
    deep_trees.append(project)
    _deep(pack / "win7" / "amd64" / "viostor" / "extra", 1100)
    _pack_spec(project, "deep", pack)
    proc = run(doit_argv(project, "build:deep"))
    assert_one_line(proc, "win7/amd64/viostor/extra", "nested more than 4 folders deep", "remove the deep folders")
    # Every other spec still loads and builds.
    ok = run(doit_argv(project, "build:sample"))
    assert ok.returncode == 0, ok.stderr
    assert digests(project / "dist" / "sample") == reference


def test_truncated_dep_file_recovers(project: Path) -> None:
    assert run(doit_argv(project)).returncode == 0
    dep = project / "build" / ".doit.db"
    dep.write_bytes(dep.read_bytes()[: dep.stat().st_size // 2])
    proc = run(doit_argv(project))
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("was damaged") == 1 and "starting afresh" in proc.stderr
    assert ".  drivers_iso:sample" in proc.stderr  # rebuilt, since nothing was known
    json.loads(dep.read_text())
    again = run(doit_argv(project))
    assert again.returncode == 0 and "damaged" not in again.stderr and ".  " not in again.stderr


def test_dep_file_is_replaced_not_rewritten(project: Path) -> None:
    """A crash while saving leaves the previous complete file: the save is a rename."""
    assert run(doit_argv(project)).returncode == 0
    dep = project / "build" / ".doit.db"
    before = dep.stat().st_ino
    spec = project / "specs" / "sample.yaml"
    spec.write_text(spec.read_text().replace("volume_label: AERO_VIRTIO", "volume_label: AERO_VIRTIO_2"))
    assert run(doit_argv(project)).returncode == 0
    assert dep.stat().st_ino != before


# --------------------------------------------------------------------------- Ctrl-C


@pytest.fixture(scope="module")
def small_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("iso")
    make_upstream_tree(work / "src")
    return make_iso(work / "src", work / "virtio-win.iso", style="rr")


def _wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


@pytest.mark.parametrize("parallel", [(), ("-n", "2")], ids=["serial", "processes"])
def test_ctrl_c_during_a_download(tmp_path: Path, small_iso: Path, parallel: tuple[str, ...]) -> None:
    project = make_project(tmp_path / "proj", with_sample=False)
    cache = tmp_path / "cache"
    data = small_iso.read_bytes()
    with serve({"/v.iso": data}, stall_after=len(data) // 2) as srv:
        spec = {"schema_version": 1, "name": "vw", "default": True,
                "source": {"kind": "virtio-win-iso", "url": srv.url("/v.iso"),
                           "sha256": hashlib.sha256(data).hexdigest()},
                "drivers": [{"name": "viostor", "device": "virtio-blk", "required": True},
                            {"name": "netkvm", "device": "virtio-net", "required": True}],
                "checks": {"placeholder_catalogs": "allow"}}
        (project / "specs" / "vw.yaml").write_text(yaml.safe_dump(spec))
        # A terminal sends Ctrl-C to the whole process group: doit and its workers.
        proc = subprocess.Popen(doit_argv(project, *parallel), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=child_env(AERO_MEDIA_CACHE=str(cache)), start_new_session=True)
        try:
            _wait_for(lambda: any(p.stat().st_size >= len(data) // 2 for p in cache.rglob("*.part")))
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in out + err, err
    assert proc.returncode == 130, err
    assert err.count("interrupted (Ctrl-C)") == 1 and len(error_lines(err)) == 1, err
    assert not (project / "build" / "vw" / "fetch.json").exists()
    assert hidden_leftovers(project / "build") == []
    # The partial download is kept for the next run to resume.
    assert list(cache.rglob("*.part"))
