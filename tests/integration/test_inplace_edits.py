"""Edits made in place with the mtime put back (``touch -r``) are seen, in inputs and in published media.

doit's state and the hash memo key files by mtime, size, ctime, inode and device:
a write changes the ctime, which user space cannot set back. A target is also
compared with the bytes its task wrote, so an edit anywhere in a medium (where
verify does not look, too) is replaced by a rebuild. No sleeps: every write moves
the ctime, and ``os.utime`` only restores the mtime.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from tests.lib.project import make_project, run_doit

pytestmark = pytest.mark.integration

ISO = "dist/sample/aero-virtio-win7-drivers.iso"


def executed(out: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)", out, re.M)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_keeping_mtime(path: Path, offset: int, xor: int = 0x01) -> None:
    """Flip bits of one byte in place (same inode, same size) and put the mtime back, as `touch -r` would."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ xor]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (st.st_mtime_ns, st.st_size, st.st_ino)


@pytest.fixture
def built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    project = make_project(tmp_path / "proj")
    assert run_doit(project) == 0
    capsys.readouterr()
    assert run_doit(project) == 0
    assert executed(capsys.readouterr().err) == set()
    return project


def test_a_byte_flipped_in_the_iso_system_area_is_rebuilt(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = built / ISO
    good = sha(iso)
    rewrite_keeping_mtime(iso, 0x1000)  # the system area: 32 KiB no reader or verify looks at
    assert sha(iso) != good
    assert run_doit(built) == 0
    ran = executed(capsys.readouterr().err)
    assert {"drivers_iso:sample", "verify:sample"} <= ran
    assert sha(iso) == good
    assert run_doit(built) == 0
    assert executed(capsys.readouterr().err) == set()


def test_a_payload_byte_flipped_in_the_iso_is_rebuilt(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = built / ISO
    good = sha(iso)
    rewrite_keeping_mtime(iso, iso.read_bytes().index(b"AERO STAND-IN"))
    assert run_doit(built) == 0
    assert {"drivers_iso:sample", "verify:sample"} <= executed(capsys.readouterr().err)
    assert sha(iso) == good


def test_an_input_inf_rewritten_in_place_reruns_its_stage(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inf = built / "prebuilt/sample/win7/x86/netkvm/netkvm.inf"
    data = inf.read_bytes()
    at = data.index(b"Signature")
    rewrite_keeping_mtime(inf, at, xor=0x20)  # 'S' -> 's': same size, an INF that means the same to Windows
    assert run_doit(built) == 0
    ran = executed(capsys.readouterr().err)
    assert {"expand:sample", "stage:sample:x86", "drivers_iso:sample"} <= ran
    iso = (built / ISO).read_bytes()
    assert inf.read_bytes() != data and inf.read_bytes() in iso  # the edited INF is what the medium carries


def test_an_edited_verify_report_reruns_verify(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = built / (ISO + ".verify.json")
    good = report.read_bytes()
    rewrite_keeping_mtime(report, good.index(b"true"), xor=0x20)  # 'true' -> 'True'
    assert run_doit(built) == 0
    # The published report is a link to the one verify wrote: verify writes it again, and it is published again.
    assert executed(capsys.readouterr().err) == {"verify:sample", "publish:sample"}
    assert report.read_bytes() == good


def test_a_touch_without_change_costs_a_hash_not_a_rebuild(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = built / ISO
    st = iso.stat()
    os.utime(iso, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run_doit(built) == 0
    assert executed(capsys.readouterr().err) == set()


def test_a_byte_written_in_fat_free_space_is_rebuilt(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vhd = built / "dist/sample/aero-virtio-win7-drivers-fat.vhd"
    good = sha(vhd)
    rewrite_keeping_mtime(vhd, vhd.stat().st_size - 512 - 4096)  # before the VHD footer: free clusters at the end
    assert run_doit(built) == 0
    assert {"fat_disk:sample", "verify_fat_disk:sample"} <= executed(capsys.readouterr().err)
    assert sha(vhd) == good


def test_a_noop_run_hashes_nothing(built: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import aero_media.hashmemo

    def no_hash(path: Path, *_a: object, **_k: object) -> tuple[str, int]:
        raise AssertionError(f"{path} was hashed on a no-op run")

    monkeypatch.setattr(aero_media.hashmemo, "sha256_file", no_hash)
    assert run_doit(built) == 0
    assert executed(capsys.readouterr().err) == set()
