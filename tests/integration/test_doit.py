"""The task graph through DoitMain: full build, no-op rerun, minimal reruns, clean, reproducibility."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.lib.project import REPO, make_project, run_doit

pytestmark = pytest.mark.integration


def executed(out: str) -> set[str]:
    """Tasks doit ran (lines '.  name'), as opposed to skipped ('-- name')."""
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)", out, re.M)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_default_build_then_noop(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_doit(project) == 0
    out = capsys.readouterr().err
    assert executed(out) == {"expand:sample", "stage:sample:x86", "stage:sample:amd64", "notices:sample",
                             "drivers_iso:sample", "verify:sample", "guest_tools:sample", "verify_guest_tools:sample",
                             "fat_disk:sample", "verify_fat_disk:sample", "publish:sample"}
    iso = project / "dist/sample/aero-virtio-win7-drivers.iso"
    report = json.loads((project / "dist/sample/aero-virtio-win7-drivers.iso.verify.json").read_text())
    assert report["ok"] and report["sha256"] == sha(iso)
    assert run_doit(project) == 0
    assert executed(capsys.readouterr().err) == set()


def test_label_change_reruns_only_the_media(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_doit(project) == 0
    capsys.readouterr()
    spec = project / "specs/sample.yaml"
    spec.write_text(spec.read_text().replace("volume_label: AERO_VIRTIO", "volume_label: AERO_VIRTIO_2"))
    assert run_doit(project) == 0
    # Both manifests record the spec file's sha256 (Aero's provenance), so both media are
    # rewritten; nothing before them runs.
    assert executed(capsys.readouterr().err) == {"drivers_iso:sample", "verify:sample", "guest_tools:sample",
                                                 "verify_guest_tools:sample", "publish:sample"}
    report = json.loads((project / "dist/sample/aero-virtio-win7-drivers.iso.verify.json").read_text())
    assert report["label"] == "AERO_VIRTIO_2"


def test_guest_tools_version_bump_reruns_only_the_media_that_read_it(project: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run_doit(project) == 0
    capsys.readouterr()
    spec = project / "specs/sample.yaml"
    spec.write_text(spec.read_text().replace("version: 0.0.0", "version: 1.2.3"))
    assert run_doit(project) == 0
    # Only the Guest Tools and their verify read the version (and record the spec file's sha256, as
    # Aero's packager does); staging, the drivers ISO, the FAT disk and their verifies stay.
    assert executed(capsys.readouterr().err) == {"guest_tools:sample", "verify_guest_tools:sample", "publish:sample"}
    manifest = json.loads((project / "dist/sample/guest-tools/manifest.json").read_text())
    assert manifest["package"]["version"] == "1.2.3"


def test_dep_file_names_no_absolute_path(project: Path) -> None:
    assert run_doit(project) == 0
    state = (project / "build/.doit.db").read_text()
    assert str(project) not in state and os.path.realpath(project) not in state
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', state)
    assert [s for s in strings if s.startswith("/")] == []
    assert "build/sample/stage/x86.json" in state  # the files are there, named from the project


def test_source_file_change_reruns_its_chain(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_doit(project) == 0
    capsys.readouterr()
    inf = project / "prebuilt/sample/win7/x86/netkvm/netkvm.inf"
    inf.write_bytes(inf.read_bytes() + b"; changed\r\n")
    assert run_doit(project) == 0
    ran = executed(capsys.readouterr().err)
    assert "stage:sample:x86" in ran and "drivers_iso:sample" in ran
    # amd64 reads the same file list but its manifest comes out identical.
    assert run_doit(project) == 0
    assert executed(capsys.readouterr().err) == set()


def test_touch_without_change_does_not_rebuild_iso(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_doit(project) == 0
    capsys.readouterr()
    m = project / "build/sample/stage/x86.json"
    os.utime(m, None)
    assert run_doit(project) == 0
    assert executed(capsys.readouterr().err) == set()


def test_new_spec_is_picked_up_and_built_by_name(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((project / "specs/sample.yaml").read_text())
    data.update(name="second", default=False)
    data["target"]["arches"] = ["amd64"]
    (project / "specs/second.yaml").write_text(yaml.safe_dump(data))
    assert run_doit(project, "build:second") == 0
    out = capsys.readouterr().err
    assert executed(out) == {"expand:second", "stage:second:amd64", "notices:second", "drivers_iso:second",
                             "verify:second", "guest_tools:second", "verify_guest_tools:second",
                             "fat_disk:second", "verify_fat_disk:second", "publish:second"}
    assert (project / "dist/second/aero-virtio-win7-drivers.iso").is_file()
    assert not (project / "dist/sample").exists()


def test_broken_spec_gives_one_line_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "specs/bad.yaml").write_text("schema_version: 1\nsource: {kind: pack-dir}\ndrivers: []\n")
    # A whole run builds the healthy specs, names the broken one in a warning and fails at the end.
    assert run_doit(project) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("warning: specs/bad.yaml:3:10: ")
    # Asked for by name: refused with every problem.
    assert run_doit(project, "build:bad") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "specs/bad.yaml:2:9: /source: missing required key 'path'" in err


def test_stage_failure_is_reported_without_traceback(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(project / "prebuilt/sample/win7/amd64/netkvm")
    assert run_doit(project) != 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "driver 'netkvm' (virtio-net) not found for amd64" in text
    assert "Traceback" not in text
    assert not (project / "dist/sample/aero-virtio-win7-drivers.iso").exists()


def test_clean_removes_outputs(project: Path) -> None:
    assert run_doit(project) == 0
    assert run_doit(project, "clean") == 0
    assert not (project / "dist/sample/aero-virtio-win7-drivers.iso").exists()
    assert not (project / "build/sample/stage/x86.json").exists()
    assert not (project / "build/sample/stage/win7/x86").exists()
    assert (project / "prebuilt/sample/win7/x86/viostor/viostor.inf").exists()


def test_clean_removes_leftovers_and_state_but_never_the_cache(project: Path) -> None:
    cache = Path(os.environ["AERO_MEDIA_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "keep.iso").write_bytes(b"cached")
    assert run_doit(project) == 0
    # What a run killed at a bad moment leaves behind: temps of dead writers, and state files.
    leftovers = [project / "build/sample/media/.aero-virtio-win7-drivers.iso.999999-abcdefgh.tmp",
                 project / "dist/sample/guest-tools/.aero-guest-tools.zip.999999-defghijk.tmp",
                 project / "dist/sample/.aero-virtio-win7-drivers.iso.999999-bcdefghi.tmp",
                 project / "dist/sample/.guest-tools.old-999999-ghijklmn/manifest.json",
                 project / "build/sample/.stage.999999-jklmnopq.tmp/x86.json",
                 project / "build/sample/proof.json"]
    for f in leftovers:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"partial")
    assert run_doit(project, "clean", "drivers_iso:sample") == 0
    assert not leftovers[0].exists() and leftovers[1].exists() and leftovers[2].exists()
    assert run_doit(project, "clean") == 0
    assert not (project / "build/sample").exists() and not (project / "dist/sample").exists()
    assert (cache / "keep.iso").read_bytes() == b"cached"
    assert (project / "prebuilt/sample/win7/x86/viostor/viostor.sys.pestub").exists()
    assert run_doit(project) == 0  # and the next run builds from scratch


def test_reproducible_across_folders_tz_and_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    a = make_project(tmp_path / "one")
    b = make_project(tmp_path / "elsewhere" / "two")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert run_doit(a) == 0
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    monkeypatch.setenv("LC_ALL", "C")
    time.tzset()
    old = os.umask(0o077)
    try:
        assert run_doit(b) == 0
    finally:
        os.umask(old)
        monkeypatch.delenv("TZ")
        time.tzset()
    for name in ("dist/sample/aero-virtio-win7-drivers.iso", "dist/sample/guest-tools/aero-guest-tools.iso",
                 "dist/sample/guest-tools/aero-guest-tools.zip", "dist/sample/guest-tools/manifest.json",
                 "dist/sample/aero-virtio-win7-drivers-fat.vhd"):
        assert sha(a / name) == sha(b / name), name


def test_repo_dodo_lists_documented_tasks() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=REPO, capture_output=True, text=True, check=True)
    names = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {"build", "stage", "notices", "drivers_iso", "verify", "fetch", "extract", "default", "guest_tools",
            "verify_guest_tools", "fat_disk", "verify_fat_disk", "signing_cert"} <= names
    assert all(len(line.split(None, 1)) == 2 for line in out.stdout.splitlines() if line.strip())


def test_corrupted_iso_is_rebuilt_and_a_failed_verify_removes_it(project: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.errors import PipelineError
    from aero_media.media.drivers_iso import verify_drivers_iso
    from aero_media.media.epoch import source_date_epoch
    from aero_media.paths import Run
    from aero_media.spec.load import load_spec
    from aero_media.spec.model import Context

    assert run_doit(project) == 0
    iso = project / "dist/sample/aero-virtio-win7-drivers.iso"
    good = sha(iso)
    data = bytearray(iso.read_bytes())
    at = data.index(b"AERO STAND-IN")
    data[at] ^= 0xFF
    iso.write_bytes(bytes(data))
    # Verify on its own judges the corrupted bytes (the published ISO is a link to the one it checks): it
    # fails, and the medium is removed from build/.
    ctx = Context(root=project)
    run = Run(load_spec(project / "specs/sample.yaml", ctx), ctx, source_date_epoch())
    with pytest.raises(PipelineError) as failed:
        verify_drivers_iso(run)
    assert "the failed media were removed" in failed.value.render()
    assert not run.pending.drivers_iso.exists()
    report = json.loads(run.pending.drivers_iso_report.read_text())
    assert not report["ok"] and report["problems"]
    assert run_doit(project) == 0
    assert sha(iso) == good
    # doit itself never publishes a corrupted ISO: it is not the one drivers_iso wrote, so it is written again.
    iso.write_bytes(bytes(data))
    capsys.readouterr()
    assert run_doit(project) == 0
    assert {"drivers_iso:sample", "verify:sample"} <= executed(capsys.readouterr().err)
    assert sha(iso) == good


def test_upper_case_package_names_stage_and_verify(project: Path) -> None:
    pkg = project / "prebuilt/sample/win7/amd64/viostor"
    for p in list(pkg.iterdir()):
        p.rename(pkg / p.name.upper())
    inf = pkg / "VIOSTOR.INF"
    inf.write_bytes(inf.read_bytes().replace(b"viostor.sys", b"VIOSTOR.SYS").replace(b"viostor.cat", b"VIOSTOR.CAT"))
    assert run_doit(project) == 0
    report = json.loads((project / "dist/sample/aero-virtio-win7-drivers.iso.verify.json").read_text())
    assert report["ok"]


def test_leftovers_of_a_killed_run_are_swept(project: Path) -> None:
    assert run_doit(project) == 0
    stale_dir = project / "build/sample/stage/win7/.x86.abc123de.tmp"
    stale_dir.mkdir()
    (stale_dir / "big.bin").write_bytes(b"x" * 1000)
    stale_iso = project / "dist/sample/.aero-virtio-win7-drivers.iso.q1w2e3r4.tmp"
    stale_iso.write_bytes(b"partial")
    inf = project / "prebuilt/sample/win7/x86/netkvm/netkvm.inf"
    inf.write_bytes(inf.read_bytes() + b"; rebuild\r\n")
    assert run_doit(project) == 0
    assert not stale_dir.exists() and not stale_iso.exists()
    assert not list(project.glob("*.db")) and (project / "build/.doit.db").is_file()
