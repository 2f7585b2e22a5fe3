"""Rebuilding the install ISO: boot entries kept, files replaced once, UDF reported as dropped, and it boots.

Oracles: our own El Torito reader (not xorriso's report) on input and output;
pycdlib reading the output's Joliet tree; and QEMU's BIOS booting the rebuilt
ISO, whose boot image prints a marker on the serial port.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aero_media.errors import SourceError, ToolError, UsageError
from aero_media.servicing import isorepack
from tests.lib import win7image
from tests.lib.needs import need_tool


@pytest.fixture(autouse=True)
def _xorriso() -> None:
    need_tool("xorriso", "to rebuild ISOs")


def joliet_file(iso: Path, path: str) -> bytes:
    import pycdlib

    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        out = io.BytesIO()
        reader.get_file_from_iso_fp(out, joliet_path=path)
        return out.getvalue()
    finally:
        reader.close()


def joliet_names(iso: Path, folder: str) -> list[str]:
    import pycdlib

    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        return sorted(c.file_identifier().decode("utf-16-be") for c in reader.list_children(joliet_path=folder)
                      if not c.is_dot() and not c.is_dotdot())
    finally:
        reader.close()


def test_the_reader_finds_both_boot_entries_and_hashes_what_firmware_loads(media_iso: Path,
                                                                           media_tree: win7image.Media) -> None:
    report = isorepack.read_report(media_iso)
    assert report.volume_id == win7image.LABEL
    assert report.filesystems == isorepack.FileSystems(iso9660=True, joliet=True, rock_ridge=False, udf=None)
    bios, uefi = report.boot_entries
    assert (bios.platform, bios.bootable, bios.emulation, bios.sector_count) == ("BIOS", True, "none", 8)
    assert bios.image_sha256 == hashlib.sha256(win7image.boot_sector()).hexdigest()
    efisys = (media_tree.root / "efi/microsoft/boot/efisys.bin").read_bytes()
    assert (uefi.platform, uefi.sector_count, uefi.image_bytes) == ("UEFI", len(efisys) // 512, len(efisys))
    assert uefi.image_sha256 == hashlib.sha256(efisys).hexdigest()


def test_a_damaged_catalog_is_refused(media_iso: Path, tmp_path: Path) -> None:
    bios = isorepack.read_report(media_iso)
    assert bios.boot_entries
    damaged = tmp_path / "damaged.iso"
    shutil.copyfile(media_iso, damaged)
    with open(media_iso, "rb") as fp:
        fp.seek(17 * 2048 + 0x47)
        catalog = int.from_bytes(fp.read(4), "little")
    with open(damaged, "r+b") as fp:
        fp.seek(catalog * 2048 + 4)
        fp.write(b"X")  # inside the validation entry's ID string: the checksum no longer adds up
    with pytest.raises(SourceError, match="checksum is wrong"):
        isorepack.read_report(damaged)


def test_repack_replaces_and_adds_files_and_keeps_the_boot_entries(media_iso: Path, tmp_path: Path) -> None:
    new_wim = tmp_path / "boot.wim"
    new_wim.write_bytes(b"serviced boot.wim stand-in")
    drivers = tmp_path / "drivers"
    (drivers / "viostor").mkdir(parents=True)
    (drivers / "viostor" / "viostor.inf").write_bytes(b"[Version]\r\n")
    out = tmp_path / "out" / "serviced.iso"
    result = isorepack.repack(media_iso, out, {"SOURCES/Boot.WIM": new_wim, "$WinPEDriver$": drivers},
                              require=["sources/boot.wim", "sources/install.wim"])
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["serviced.iso"]
    assert result.dropped == ()
    assert len(result.after.boot_entries) == 2
    assert all(a.same_boot(b) for a, b in zip(result.before.boot_entries, result.after.boot_entries, strict=True))
    again = isorepack.read_report(out)  # read afresh: the same as what repack checked
    assert again == result.after and again.volume_id == win7image.LABEL
    assert again.filesystems == result.before.filesystems
    assert joliet_names(out, "/sources") == ["boot.wim", "install.wim"]  # replaced in place, not added beside
    assert joliet_file(out, "/sources/boot.wim") == b"serviced boot.wim stand-in"
    assert joliet_file(out, "/$WinPEDriver$/viostor/viostor.inf") == b"[Version]\r\n"


def test_an_input_with_udf_loses_it_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pycdlib")
    files = {"boot/etfsboot.com": win7image.boot_sector(), "efi/microsoft/boot/efisys.bin": b"E" * 4096,
             "sources/boot.wim": b"wim", "setup.exe": b"MZ"}
    udf = win7image.make_udf_iso(files, tmp_path / "udf.iso")
    before = isorepack.read_report(udf)
    assert before.filesystems.udf == "UDF 1.02"  # pycdlib's domain revision, the family retail DVDs use
    result = isorepack.repack(udf, tmp_path / "out.iso", {}, require=["sources/boot.wim"])
    assert result.dropped == ("UDF",) and result.after.filesystems.udf is None
    assert all(a.same_boot(b) for a, b in zip(before.boot_entries, result.after.boot_entries, strict=True))
    assert "has no UDF" in capsys.readouterr().err
    with pytest.raises(SourceError, match=r"lacks sources/install\.wim \(it has UDF"):
        isorepack.repack(udf, tmp_path / "x.iso", {}, require=["sources/install.wim"])
    assert not (tmp_path / "x.iso").exists()


def test_files_of_4_gib_are_refused_before_writing(media_iso: Path, tmp_path: Path) -> None:
    big = tmp_path / "install.wim"
    with open(big, "wb") as fp:
        fp.truncate(isorepack.MAX_FILE)  # sparse: costs no disk
    out = tmp_path / "out.iso"
    with pytest.raises(SourceError) as info:
        isorepack.repack(media_iso, out, {"sources/install.wim": big})
    assert "/sources/install.wim (4294967296 bytes)" in info.value.render()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["install.wim"]
    with pytest.raises(UsageError, match="no such file"):
        isorepack.repack(media_iso, out, {"sources/x": tmp_path / "absent"})
    with pytest.raises(UsageError, match="not a path inside the image"):
        isorepack.repack(media_iso, out, {"../x": big})


def test_a_missing_xorriso_names_the_package(media_iso: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError) as info:
        isorepack.repack(media_iso, tmp_path / "o.iso", {})
    assert "apt-get install xorriso" in info.value.render()


def _boot_marker(iso: Path, log: Path, seconds: float) -> bytes:
    """Boot ``iso`` from CD in QEMU (BIOS) for at most ``seconds``; return what reached the serial port."""
    qemu = need_tool("qemu-system-x86_64", "to boot the rebuilt ISO")
    cmd = [qemu, "-display", "none", "-serial", f"file:{log}", "-monitor", "none", "-no-reboot", "-m", "32",
           "-net", "none", "-boot", "d", "-cdrom", str(iso)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and win7image.BOOT_MARKER in log.read_bytes():
                break
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return log.read_bytes() if log.exists() else b""


def test_qemu_boots_the_rebuilt_iso(media_iso: Path, tmp_path: Path) -> None:
    new_wim = tmp_path / "boot.wim"
    new_wim.write_bytes(b"serviced")
    out = isorepack.repack(media_iso, tmp_path / "serviced.iso", {"sources/boot.wim": new_wim}).after
    assert out.boot_entries
    seconds = float(os.environ.get("AERO_QEMU_BOOT_SECONDS", "20"))
    serial = _boot_marker(tmp_path / "serviced.iso", tmp_path / "serial.log", seconds)
    assert win7image.BOOT_MARKER + b"\r\n" in serial
