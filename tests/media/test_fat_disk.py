"""The FAT driver disk as the pipeline builds it: layout, oracles, verify, the CLI, certificates."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from aero_media.cli import main
from aero_media.errors import PipelineError
from aero_media.media.epoch import source_date_epoch
from aero_media.media.fat_disk import verify_fat_disk
from aero_media.media.fatread import Partition, read_fat_disk
from aero_media.media.vhd import parse_footer
from aero_media.paths import Run
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context
from tests.lib.needs import need_tool
from tests.lib.project import expanded_sample, make_project, run_doit

pytestmark = pytest.mark.integration

VHD = "build/sample/media/aero-virtio-win7-drivers-fat.vhd"  # made and verified: single tasks do not publish


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("fat") / "proj")
    assert run_doit(project, "verify_fat_disk:sample") == 0
    return project


def test_layout_and_report(built: Path) -> None:
    content = read_fat_disk(built / VHD)
    files = set(content.files)
    assert {"INSTALL.TXT", "THIRD_PARTY_NOTICES.md", "x86/viostor/viostor.inf", "x64/viostor/viostor.sys",
            "$WinPEDriver$/amd64/viostor/viostor.inf", "$WinPEDriver$/x86/netkvm/netkvm.cat"} <= files
    assert not any(f.startswith(("win7/", "amd64/")) for f in files)
    assert content.label == "AERO" and content.partition.first_lba == 2048 and content.partition.type == 0x0C
    report = json.loads((built / f"{VHD}.verify.json").read_text())
    assert report["ok"] and report["files_checked"] == len(files)
    assert report["virtual_size"] % (1024 * 1024) != 0 or report["virtual_size"] >= 64 * 1024 * 1024


def test_install_txt_explains_both_ways(built: Path) -> None:

    mtype = need_tool("mtype")
    text = subprocess.run([mtype, "-i", f"{built / VHD}@@1M", "::/INSTALL.TXT"], capture_output=True, text=True,
                          env={**os.environ, "MTOOLSRC": "/dev/null"}, check=True).stdout
    assert "AUTOMATICALLY" in text and "$WinPEDriver$" in text and "E:\\x64\\viostor\\" in text


def test_independent_oracles_agree(built: Path, tmp_path: Path) -> None:
    mcopy = need_tool("mcopy")
    qemu_img = need_tool("qemu-img")
    env = {**os.environ, "MTOOLSRC": "/dev/null", "MTOOLS_SKIP_CHECK": "1"}
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([mcopy, "-s", "-n", "-i", f"{built / VHD}@@1M", "::/*", str(out)], check=True, env=env,
                   capture_output=True)
    ours = read_fat_disk(built / VHD).files
    import hashlib

    theirs = {p.relative_to(out).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)
              for p in out.rglob("*") if p.is_file()}
    assert theirs == ours
    info = json.loads(subprocess.run([qemu_img, "info", "-f", "vpc", "--output=json", str(built / VHD)],
                                     capture_output=True, text=True, check=True).stdout)
    size = (built / VHD).stat().st_size
    assert info["virtual-size"] == size - 512
    footer = parse_footer((built / VHD).read_bytes()[-512:], size)
    assert footer.disk_type == 2 and footer.current_size == size - 512


def test_verify_removes_a_damaged_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    assert run_doit(project, "fat_disk:sample") == 0
    disk = project / VHD
    content = read_fat_disk(disk)
    # Find the file's bytes and flip one: the reader's hash of it must no longer match the stage manifest.
    data = bytearray(disk.read_bytes())
    stage = (project / "build/sample/stage/win7/amd64/viostor/viostor.sys").read_bytes()
    at = data.find(stage, content.partition.first_lba * 512)
    assert at > 0
    data[at + 100] ^= 0xFF
    disk.write_bytes(bytes(data))
    # Verify on its own judges the damaged bytes (doit would first rewrite a disk that is not the one
    # fat_disk wrote): it fails, naming the file, and the disk is removed.
    ctx = Context(root=project)
    run = Run(load_spec(project / "specs/sample.yaml", ctx), ctx, source_date_epoch())
    with pytest.raises(PipelineError) as failed:
        verify_fat_disk(run)
    text = failed.value.render()
    # The sample's stand-ins of one arch are identical, so the flipped copy may be any of them.
    assert ".sys: sha256" in text and "differs from the stage or notices manifest" in text
    assert not disk.exists()
    assert run_doit(project, "verify_fat_disk:sample") == 0  # rebuilt
    # And doit never publishes a damaged disk: it is rewritten before it is verified.
    good = disk.read_bytes()
    disk.write_bytes(bytes(data))
    assert run_doit(project, "verify_fat_disk:sample") == 0
    assert disk.read_bytes() == good


def test_build_fat_cli(tmp_path: Path) -> None:
    pack = expanded_sample(tmp_path / "pack")
    out = tmp_path / "out" / "drivers-fat.vhd"
    assert main(["build-fat", "--drivers-root", str(pack), "--output", str(out), "--allow-placeholder-catalogs",
                 "--require-arch", "amd64", "--label", "AERO_W7"]) == 0
    content = read_fat_disk(out)
    assert content.label == "AERO_W7"
    assert not any(p.startswith("x86/") for p in content.files) and "x64/netkvm/netkvm.inf" in content.files
    assert sorted(p.name for p in out.parent.iterdir()) == ["drivers-fat.vhd"]
    again = tmp_path / "again.vhd"
    assert main(["build-fat", "--drivers-root", str(pack), "--output", str(again), "--allow-placeholder-catalogs",
                 "--require-arch", "amd64", "--label", "AERO_W7"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_signed_media_carry_the_certificate(tmp_path: Path) -> None:
    need_tool("osslsigncode")
    import shutil

    from tests.lib.project import REPO

    project = make_project(tmp_path / "proj")
    shutil.copyfile(REPO / "specs" / "sample-testsigned.yaml", project / "specs" / "sample-testsigned.yaml")
    assert run_doit(project, "publish:sample-testsigned") == 0
    content = read_fat_disk(project / "dist/sample-testsigned/aero-virtio-win7-drivers-fat.vhd")
    certs = [p for p in content.files if p.startswith("certs/")]
    cer = (project / "build/sample-testsigned/signing/aero-test.cer").read_bytes()
    import hashlib

    assert len(certs) == 1 and certs[0].startswith("certs/aero-test")
    assert content.files[certs[0]] == (hashlib.sha256(cer).hexdigest(), len(cer))
    assert not any(p.endswith((".pem", ".pfx", ".key")) for p in content.files)


def test_fsck_runs_beside_the_reader(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsck.fat starts before the independent reader has finished: the two overlap."""
    import threading

    from aero_media.media import fat_disk

    need_tool("fsck.fat")
    started = threading.Event()
    real_fsck, real_read = fat_disk._fsck, fat_disk.read_fat_disk

    def fsck(path: Path, part: Partition) -> tuple[str, list[str]]:
        started.set()
        return real_fsck(path, part)

    def read(path: Path) -> object:
        # Before the fix fsck ran after the reader, so this wait ended without it.
        assert started.wait(timeout=60), "fsck.fat had not started while the disk was being read"
        return real_read(path)

    monkeypatch.setattr(fat_disk, "_fsck", fsck)
    monkeypatch.setattr(fat_disk, "read_fat_disk", read)
    ctx = Context(root=built)
    report = verify_fat_disk(Run(load_spec(built / "specs/sample.yaml", ctx), ctx, source_date_epoch()))
    assert report.fsck == "clean" and not report.problems


def test_an_interrupt_while_the_reader_runs_does_not_wait_for_fsck(built: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM reaches a doit worker as SystemExit when doit dies: the verify must not wait on a hung fsck.fat."""
    import threading

    from aero_media.media import fat_disk

    release = threading.Event()

    def hung_fsck(*_args: object) -> tuple[str, list[str]]:
        release.wait(60)
        return "clean", []

    def interrupted(_path: Path) -> None:
        raise SystemExit(143)

    monkeypatch.setattr(fat_disk, "_fsck", hung_fsck)
    monkeypatch.setattr(fat_disk, "read_fat_disk", interrupted)
    ctx = Context(root=built)
    run = Run(load_spec(built / "specs/sample.yaml", ctx), ctx, source_date_epoch())
    ended: list[BaseException] = []

    def verify() -> None:
        try:
            verify_fat_disk(run)
        except BaseException as exc:  # what ended the verify is the point
            ended.append(exc)

    worker = threading.Thread(target=verify, daemon=True)
    worker.start()
    worker.join(10)
    try:
        assert not worker.is_alive(), "the verify waited for fsck.fat after an interrupt"
        assert len(ended) == 1 and isinstance(ended[0], SystemExit)
    finally:
        release.set()
